-- An append in one statement, committed as it ends: the log's row lock (taken inside
-- trace_append) is then held for the statement and its commit only, never across a round
-- trip to the node. Inside a transaction, the lock was held from trace_append until the
-- node, having read its answer, sent COMMIT: a round trip through a busy event loop for every
-- append, while every other append waited (0.66 backends on Lock/transactionid, measured).
--
-- Where trace_append finds that the log moved on since the node's checks (it would return
-- -1 - size), this raises instead, so that the whole statement, with the audit row and the
-- NOTIFY written beside it, is undone; the size goes in DETAIL for the node to check again
-- from. SQLSTATE IDT01 is idnode's own (class ID is not PostgreSQL's).
CREATE FUNCTION trace_append_or_raise(
    p_since bigint, p_count integer, p_identifiers text, p_kinds text, p_occurred text,
    p_places text, p_actor text, p_attrs text, p_corrects text, p_inputs text,
    p_attachments text, p_before text, p_after text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first bigint := trace_append(p_since, p_count, p_identifiers, p_kinds, p_occurred,
                                 p_places, p_actor, p_attrs, p_corrects, p_inputs,
                                 p_attachments, p_before, p_after);
BEGIN
    IF first < 0 THEN
        RAISE EXCEPTION 'the trace log moved on since the append was checked'
            USING ERRCODE = 'IDT01', DETAIL = (-1 - first)::text;
    END IF;
    RETURN first;
END $$;
