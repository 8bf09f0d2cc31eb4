-- A batch registration writes its rows by COPY, and encoding two timestamps a row was a
-- tenth of the node's work per record (asyncpg's timestamptz encoder, ~1.5 us each). The
-- registering transaction now sets idnode.registered_at once (set_config(..., true): it
-- ends with the transaction) and COPY leaves created_at and updated_at to these defaults,
-- which read it: every row of the batch gets exactly the time its signature covers. Any
-- other insert gets now(), as before (nullif: a custom setting once set in a session reads
-- '' after its transaction, not NULL).
ALTER TABLE handles
    ALTER COLUMN created_at
        SET DEFAULT coalesce(nullif(current_setting('idnode.registered_at', true), '')::timestamptz, now()),
    ALTER COLUMN updated_at
        SET DEFAULT coalesce(nullif(current_setting('idnode.registered_at', true), '')::timestamptz, now());
