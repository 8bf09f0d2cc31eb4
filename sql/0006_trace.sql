-- 一品一码 traceability: append-only events in one RFC 6962 Merkle log per node.

-- The log's size; appends lock this row, so leaf positions are gap-free and ordered.
CREATE TABLE trace_log (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    size  bigint NOT NULL DEFAULT 0
);
INSERT INTO trace_log (id, size) VALUES (true, 0);

CREATE TABLE trace_events (
    leaf         bigint PRIMARY KEY,          -- position in the log, from 0
    identifier   text NOT NULL,
    kind         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    place        text NOT NULL DEFAULT '',
    actor        text NOT NULL,
    attrs        jsonb NOT NULL DEFAULT '{}',
    -- A correction is a new event naming the one it corrects; nothing is ever rewritten.
    corrects     bigint REFERENCES trace_events (leaf),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    leaf_hash    bytea NOT NULL
);
CREATE INDEX trace_events_identifier ON trace_events (identifier, leaf);

-- Roots of the log's perfect subtrees (level L, index i covers leaves [i*2^L, (i+1)*2^L)):
-- any root or proof needs O(log n) of them.
CREATE TABLE trace_nodes (
    level  integer NOT NULL,
    idx    bigint NOT NULL,
    hash   bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads, one per size the node has signed.
CREATE TABLE trace_heads (
    size        bigint PRIMARY KEY,
    root        bytea NOT NULL,
    jws         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION trace_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trace events are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER trace_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON trace_events
    FOR EACH STATEMENT EXECUTE FUNCTION trace_append_only();
