-- Handle protocol authentication: a challenge (nonce) waiting for its answer. Handle.Net's
-- clients answer on a new TCP connection, which under `serve --workers N` may reach another
-- process, so pending challenges live here rather than in one process's memory. They are
-- short-lived and a lost one only makes its client authenticate again: unlogged.
CREATE UNLOGGED TABLE hdl_challenges (
    session_id  integer PRIMARY KEY CHECK (session_id > 0),
    nonce       bytea NOT NULL,
    -- The request digest the challenge carried: the answer signs nonce || digest.
    digest      bytea NOT NULL,
    -- The challenged request (envelope and message), carried out once the answer verifies.
    request     bytea NOT NULL,
    client      text NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX hdl_challenges_expiry ON hdl_challenges (expires_at);
