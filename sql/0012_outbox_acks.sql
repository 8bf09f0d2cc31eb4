-- When the top-level node acknowledged each stretch of the outbox: delivered events are kept
-- outbox_retention seconds after their acknowledgement (not after their creation, so an event
-- that waited days for a top that was down still gets the whole retention), then pruned.
-- One row per acknowledgement (a shipped batch); pruning drops the rows it has used.
CREATE TABLE outbox_acks (
    upstream  text NOT NULL,
    seq       bigint NOT NULL,
    acked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upstream, seq)
);

-- What was acknowledged before this table existed counts as acknowledged at its last success.
INSERT INTO outbox_acks (upstream, seq, acked_at)
SELECT upstream, acked_seq, coalesce(last_success_at, now()) FROM sync_state WHERE acked_seq > 0;
