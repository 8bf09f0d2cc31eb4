-- Signed tree heads of each secondary node's traceability log, as reported and checked: each
-- one signed by the node's key and consistent with the heads kept before it, so a node that
-- rewrote its event log is caught at its next report.
CREATE TABLE trace_heads (
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL,
    jws         text NOT NULL,
    -- false when it could not be checked against an earlier head (the first one reported, or
    -- one linked to a head the top never received).
    linked      boolean NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_prefix, size)
);
