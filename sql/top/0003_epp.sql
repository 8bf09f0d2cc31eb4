-- The Business Management System's side of EPP (draft-chen-top-level-interface-protocol):
-- each node's EPP password (RFC 5730 <pw>: 6 to 16 characters, so not the node token),
-- enterprise objects, identifier values, the transactions already answered (a command
-- resent with the same client transaction id and body gets the same answer, applied once),
-- and the message queue a node reads with <poll>.
ALTER TABLE nodes ADD COLUMN epp_pw_salt bytea, ADD COLUMN epp_pw_hash bytea;

CREATE TABLE enterprises (
    prefix      text PRIMARY KEY,
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    name        text NOT NULL DEFAULT '',
    org_code    text NOT NULL DEFAULT '',
    contact     text NOT NULL DEFAULT '',
    -- EPP status: ok, clientHold (suspended by its node), inactive (revoked).
    status      text NOT NULL DEFAULT 'ok',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE identifiers ADD COLUMN vals jsonb NOT NULL DEFAULT '[]',
                        ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE epp_transactions (
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    cltrid      text NOT NULL,
    -- SHA-256 of the command: the same id with another body is another command.
    digest      bytea NOT NULL,
    svtrid      text NOT NULL,
    code        integer NOT NULL,
    reason      text NOT NULL DEFAULT '',
    resdata     text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_prefix, cltrid)
);

CREATE TABLE epp_messages (
    id          bigserial PRIMARY KEY,
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    text        text NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    acked_at    timestamptz
);
CREATE INDEX epp_messages_pending ON epp_messages (node_prefix, id) WHERE acked_at IS NULL;
