-- Handle admin identities: a credential bound to a public key instead of an API secret. A Handle
-- or IDIS client logs in as `INDEX:PREFIX/SUFFIX` (e.g. 300:88.118.8/ADMIN) by signing the
-- server's challenge; the credential's role, scopes, prefixes and expiry apply as for a key.
ALTER TABLE credentials
    -- Normalised INDEX:PREFIX/SUFFIX (the index without leading zeros). One binding per
    -- identity, kept after revocation: a new key is bound under a new index.
    ADD COLUMN handle_admin text UNIQUE
        CHECK (handle_admin ~ '^[1-9][0-9]{0,9}:[^/]+/.+$'),
    -- SubjectPublicKeyInfo (DER) of the RSA or DSA key that signs the challenge answers.
    ADD COLUMN public_key bytea,
    ALTER COLUMN salt DROP NOT NULL,
    ALTER COLUMN secret_hash DROP NOT NULL,
    -- Either an API secret (salt and hash) or a public key, never both, never neither.
    ADD CONSTRAINT credentials_secret_or_public_key CHECK (
        (salt IS NULL) = (secret_hash IS NULL)
        AND (secret_hash IS NOT NULL) <> (public_key IS NOT NULL)),
    ADD CONSTRAINT credentials_handle_admin_has_key CHECK (
        (handle_admin IS NULL) = (public_key IS NULL)),
    -- A client certificate authenticates as an API key's credential, not a Handle admin's.
    ADD CONSTRAINT credentials_handle_admin_no_certificate CHECK (
        public_key IS NULL OR cert_sha256 IS NULL);
