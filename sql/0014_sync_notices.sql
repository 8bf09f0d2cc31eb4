-- What an upstream refused or told this node, kept for the operator (`idnode sync status`):
-- an EPP command answered with an error result that a retry would only repeat (the outbox
-- moves on past it, so one refusal does not stop the stream), and the messages the
-- top-level node queued for this node (EPP <poll>).
CREATE TABLE sync_notices (
    id        bigserial PRIMARY KEY,
    upstream  text NOT NULL,
    -- The outbox event the refused command shipped (NULL for a polled message).
    seq       bigint,
    kind      text NOT NULL CHECK (kind IN ('refused', 'message')),
    command   text NOT NULL DEFAULT '',
    code      integer,
    text      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_notices_upstream ON sync_notices (upstream, id);
