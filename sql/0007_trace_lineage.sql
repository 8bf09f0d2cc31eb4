-- 一品一码, continued: lineage between products, attachments, and where codes were scanned.

-- What each event was made from and rests on, as its leaf commits to them.
ALTER TABLE trace_events
    ADD COLUMN inputs text[] NOT NULL DEFAULT '{}',
    ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]';

-- Lineage: a product made from, split from or merged out of others (a bag of rice ← its batch ←
-- the field lots harvested into it). Each link is declared by a logged event (its inputs), so
-- it is as tamper-evident as the event; this table is the index that walks it.
CREATE TABLE trace_links (
    child   text NOT NULL,
    parent  text NOT NULL,
    leaf    bigint NOT NULL REFERENCES trace_events (leaf),
    PRIMARY KEY (child, parent)
);
CREATE INDEX trace_links_parent ON trace_links (parent);
CREATE TRIGGER trace_links_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON trace_links
    FOR EACH STATEMENT EXECUTE FUNCTION trace_append_only();

-- Attachments (test reports, photos) are stored once by content; events commit to their hash.
CREATE TABLE trace_attachments (
    sha256      bytea PRIMARY KEY,
    media_type  text NOT NULL,
    content     bytea NOT NULL
);

-- Scans of a code by consumers, per coarse place (a client network), for counterfeit warnings.
CREATE TABLE trace_scans (
    identifier  text NOT NULL,
    place       text NOT NULL,
    count       bigint NOT NULL,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (identifier, place)
);
