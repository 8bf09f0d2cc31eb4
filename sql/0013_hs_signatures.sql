-- The Handle and IDIS signature forms (docs/SIGNING.md): one HS_SIGNATURE per record version
-- and form (RS256 over SHA-256 digests, SM2SM3 over SM3 digests), made on the first read that
-- serves the record in a Handle form and kept here. An RSA or SM2 signature per record is too
-- dear to make while registering a batch of thousands; the JOSE batch signature is made then,
-- and vouches for the values a later HS_SIGNATURE is made over.
--
-- A row belongs to one version of one registration of the record (version and the record's
-- created_at: a record deleted and registered again starts at version 1 anew), and to the node
-- certificate it chains to (cert_id). Rows are replaced, never read for another version: the
-- handles row and its version are not touched. Partitioned like handles, by prefix.
CREATE TABLE hs_signatures (
    prefix          text NOT NULL,
    suffix          text NOT NULL,
    alg             text NOT NULL CHECK (alg IN ('RS256', 'SM2SM3')),
    version         bigint NOT NULL,
    record_created  timestamptz NOT NULL,
    -- SHA-256 (hex) of the node certificate (HS_CERT) the signature chains to.
    cert_id         text NOT NULL,
    jws             text NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (prefix, suffix, alg)
) PARTITION BY HASH (prefix);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE hs_signatures_p%s PARTITION OF hs_signatures '
            'FOR VALUES WITH (MODULUS 16, REMAINDER %s)', lpad(i::text, 2, '0'), i);
    END LOOP;
END $$;
