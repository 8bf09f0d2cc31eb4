-- Outbox order stays commit order, but the order lock is no longer held across the writer's
-- round trips to the database. Before, writers took the lock before inserting their event and
-- kept it through the rest of the transaction and COMMIT, so every client round trip (and any
-- time the writing process spent on other work meanwhile) serialised all writers.
--
-- Now an event is inserted with a provisional (negative) seq anywhere in the transaction; at
-- COMMIT a deferred trigger takes the same lock and gives the event its final seq. The lock is
-- held from there to the end of the commit, with no client round trip inside it, so an event
-- with a higher seq can never become visible while one with a lower seq is still to commit:
-- the shipper may read at any time and never skips a row. Readers only ever see committed
-- rows, and those carry their final (positive) seq.
CREATE SEQUENCE outbox_provisional_seq;
ALTER TABLE outbox ALTER COLUMN seq SET DEFAULT -nextval('outbox_provisional_seq');

CREATE FUNCTION outbox_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 0x1D0DE0B0, the order lock (also what earlier code took before inserting).
    PERFORM pg_advisory_xact_lock(487448752);
    UPDATE outbox SET seq = nextval('outbox_seq_seq') WHERE seq = NEW.seq;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER outbox_commit_order AFTER INSERT ON outbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_commit_order();
