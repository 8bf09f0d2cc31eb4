-- Signed records: one JWS per registration batch (over a Merkle root); each record keeps
-- its leaf index and inclusion path.

CREATE TABLE signatures (
    id          bigserial PRIMARY KEY,
    jws         text NOT NULL,
    -- The optional post-quantum (ML-DSA-65) signature over the same statement.
    jws_pq      text,
    tree_size   integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE handles
    ADD COLUMN sig_id bigint,
    ADD COLUMN sig_index integer,
    -- The inclusion path: 32-byte hashes, concatenated.
    ADD COLUMN sig_proof bytea;
