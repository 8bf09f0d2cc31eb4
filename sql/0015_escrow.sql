-- Data escrow deposits made by this node (RFC 8909 framework, after
-- draft-industrial-internet-identifier-data-escrow): each one's id, type, the deposit it
-- follows, its watermark and the outbox position it covers (an incremental deposit holds
-- what changed after the previous deposit's position), and what the escrow agent answered.
CREATE TABLE escrow_deposits (
    id           text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('FULL', 'DIFF')),
    prev_id      text REFERENCES escrow_deposits (id),
    watermark    timestamptz NOT NULL,
    outbox_seq   bigint NOT NULL,
    objects      bigint NOT NULL,
    deletes      bigint NOT NULL,
    file         text NOT NULL,
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- The escrow agent's verification result, when reported back.
    verified     text
);
CREATE SEQUENCE escrow_deposit_seq;
