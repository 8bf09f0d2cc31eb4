-- The transactional outbox: what this node owes the top-level node, written in the same
-- transaction as the change it reports.

CREATE TABLE outbox (
    -- Writers take an advisory lock just before inserting here and keep it until commit, so
    -- sequence order is commit order and the shipper never skips a row committed late.
    seq         bigserial PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- How far each upstream has acknowledged, and how the last attempts went.
CREATE TABLE sync_state (
    upstream        text PRIMARY KEY,
    acked_seq       bigint NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz
);
