-- GS1 Company Prefixes mapped to the enterprise prefixes their GTINs resolve under.
CREATE TABLE gs1_prefixes (
    gcp         text PRIMARY KEY CHECK (gcp ~ '^[0-9]{4,12}$'),
    prefix      text NOT NULL REFERENCES prefixes (prefix),
    created_at  timestamptz NOT NULL DEFAULT now()
);
