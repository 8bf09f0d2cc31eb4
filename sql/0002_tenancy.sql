-- Enterprises, prefix ownership, credentials, templates and the audit log.

CREATE TABLE enterprises (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- 统一社会信用代码 (GB 32100-2015), check digit validated by the node before insert.
    uscc        char(18) NOT NULL UNIQUE,
    contact     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE prefixes
    ADD COLUMN enterprise_id bigint REFERENCES enterprises (id),
    -- When suspended: false keeps resolution working, true refuses it too.
    ADD COLUMN refuse_resolution boolean NOT NULL DEFAULT false,
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX prefixes_enterprise ON prefixes (enterprise_id);

-- API keys: `idn_<key_id>_<secret>`; only a salted SHA-256 of the secret is kept. The secret
-- has 256 bits of entropy, so a slow password hash would add latency without adding safety.
CREATE TABLE credentials (
    key_id          text PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('operator', 'enterprise')),
    enterprise_id   bigint REFERENCES enterprises (id),
    -- Subset of read, write, admin.
    scopes          text[] NOT NULL,
    -- Prefixes the key may act on; NULL means every prefix of its enterprise.
    prefixes        text[],
    salt            bytea NOT NULL,
    secret_hash     bytea NOT NULL,
    -- SHA-256 of a client certificate (DER) that authenticates as this credential over mTLS.
    cert_sha256     bytea UNIQUE,
    label           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    CHECK ((role = 'enterprise') = (enterprise_id IS NOT NULL))
);

CREATE INDEX credentials_enterprise ON credentials (enterprise_id);

-- 元数据模板: a JSON Schema that registrations under the prefix must satisfy.
CREATE TABLE templates (
    prefix      text PRIMARY KEY REFERENCES prefixes (prefix),
    name        text NOT NULL,
    schema      jsonb NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: who did what, when, from where, with the versions before and after.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    enterprise_id   bigint,
    client          text NOT NULL DEFAULT '',
    action          text NOT NULL,
    target          text NOT NULL,
    prefix          text,
    before_version  bigint,
    after_version   bigint,
    detail          jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_prefix ON audit_log (prefix, id);
CREATE INDEX audit_log_enterprise ON audit_log (enterprise_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
