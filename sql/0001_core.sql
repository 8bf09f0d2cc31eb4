-- Core schema: enterprise prefixes, identifier records, batch idempotency.

CREATE TABLE prefixes (
    prefix      text PRIMARY KEY,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per identifier, its values as one jsonb array: a resolve is a single index probe
-- and one heap fetch, and a batch registration is one COPY.
--
-- Hash-partitioned by enterprise prefix: every identifier of a prefix lives in one
-- partition (listing a prefix touches one partition; a prefix can move or be dropped as a
-- unit; on Citus the same column is the distribution key, see docs/SCALING.md), and each
-- partition's primary-key B-tree stays a fraction of the whole, so point lookups remain
-- O(log n) with a shallower tree. No foreign key to prefixes: the registry checks a batch's
-- prefixes once, where a per-row RI trigger would cost COPY throughput.
CREATE TABLE handles (
    prefix      text NOT NULL,
    suffix      text NOT NULL,
    vals        jsonb NOT NULL,
    version     bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prefix, suffix)
) PARTITION BY HASH (prefix);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE handles_p%s PARTITION OF handles FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(i::text, 2, '0'), i);
    END LOOP;
END $$;

-- Idempotency of batch registration: the key row commits with the batch it stands for.
CREATE TABLE register_batches (
    idempotency_key text PRIMARY KEY,
    request_digest  bytea NOT NULL,
    registered      integer NOT NULL,
    committed_at    timestamptz NOT NULL DEFAULT now()
);
