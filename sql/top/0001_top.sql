-- The reference top-level node (国家顶级节点 role): registered secondary nodes, the prefixes they
-- hold, the events they report, identifier locations and statistics.

CREATE TABLE nodes (
    node_prefix       text PRIMARY KEY,
    token_id          text NOT NULL UNIQUE,
    token_salt        bytea NOT NULL,
    token_hash        bytea NOT NULL,
    http_base         text NOT NULL DEFAULT '',
    grpc_address      text NOT NULL DEFAULT '',
    jwks              jsonb NOT NULL DEFAULT '{"keys": []}',
    key_statements    jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    registered_at     timestamptz,
    last_heartbeat_at timestamptz,
    outbox_backlog    bigint NOT NULL DEFAULT 0
);

CREATE TABLE node_prefixes (
    prefix        text PRIMARY KEY,
    node_prefix   text NOT NULL REFERENCES nodes (node_prefix),
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- Every reported event exactly once per (node, seq): a resent batch changes nothing.
CREATE TABLE events (
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    -- 'applied', or why it was refused (e.g. a prefix the node does not hold).
    outcome     text NOT NULL,
    created_at  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_prefix, seq)
);

CREATE TABLE identifiers (
    identifier  text PRIMARY KEY,
    node_prefix text NOT NULL REFERENCES nodes (node_prefix),
    version     bigint NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stats (
    node_prefix   text NOT NULL REFERENCES nodes (node_prefix),
    day           date NOT NULL,
    prefix        text NOT NULL,
    registrations bigint NOT NULL DEFAULT 0,
    resolutions   bigint NOT NULL DEFAULT 0,
    errors        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (node_prefix, day, prefix)
);
