-- Appends hold the log's row lock for one statement and the commit, not for the whole
-- transaction. Before, an append locked trace_log first and kept it through its order and
-- lineage checks, its leaf hashing and tree nodes (computed by the node), and some ten client
-- round trips, each of which waited for the node's event loop while every other append waited
-- for the lock.
--
-- Now the node checks an append against the log as it stands (reading its size `since`
-- first, so every event it did not see has a leaf >= since), writes the audit row and the
-- invalidation NOTIFY, and then calls trace_append once. Under the lock, trace_append:
--   * rechecks cheaply: if any event of the appended identifiers was appended since `since`
--     (time order), or any event with inputs (a lineage link) when the append declares
--     inputs (cycles), it writes nothing and returns -1 - size; the node then runs its
--     checks again (the lock is now held, so nothing else can change) and calls it again
--     with that size;
--   * numbers the events from the log's size, so leaves stay dense and in commit order;
--   * hashes each leaf as RFC 6962 does, SHA-256(0x00 || the leaf's RFC 8785 document): the
--     node sends each document as the bytes before and after its leaf number (the one field
--     it cannot know before the lock), and
--   * hashes the new Merkle tree nodes (SHA-256(0x01 || left || right)) from the log's
--     frontier, and writes events, lineage links, nodes and the new size.
-- A corrected event stays what it was (events are append-only), so a correction's check
-- needs no recheck; nor does "registered" (the handle is not locked by an append, as before).
-- The events come as one newline-separated text per column (no value holds a newline:
-- identifiers, kinds and places refuse control characters, stored JSON and RFC 8785 text
-- escape them; an event's inputs are tab-separated), which costs the node far less to send
-- than arrays; times as ISO 8601 text, corrects empty when absent.
CREATE FUNCTION trace_lines(lines text, null_line text DEFAULT NULL) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    -- A leading newline, dropped again, so that '' is one empty line (not none).
    SELECT (string_to_array(E'\n' || lines, E'\n', null_line))[2:]
$$;

CREATE FUNCTION trace_append(
    p_since bigint, p_count integer, p_identifiers text, p_kinds text, p_occurred text,
    p_places text, p_actor text, p_attrs text, p_corrects text, p_inputs text,
    p_attachments text, p_before text, p_after text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n_events integer := p_count;
    identifiers text[] := trace_lines(p_identifiers);
    inputs text[] := trace_lines(p_inputs);
    before text[] := trace_lines(p_before);
    after text[] := trace_lines(p_after);
    v_size bigint;
    linked boolean := p_inputs !~ '^\n*$';
    -- The frontier: edge[level + 1] is the hash of the rightmost complete subtree at `level`.
    edge bytea[] := array_fill(NULL::bytea, ARRAY[64]);
    hashes bytea[] := '{}';
    levels integer[] := '{}';
    idxs bigint[] := '{}';
    nodes bytea[] := '{}';
    found_nodes integer := 0;
    h bytea;
    i bigint;
    j bigint;
    lvl integer;
    r record;
BEGIN
    SELECT size INTO v_size FROM trace_log FOR UPDATE;
    -- A volatile function's every statement sees what committed before it began: from here
    -- on, every append before this one (the previous holders of the lock).
    IF v_size > p_since AND (
            EXISTS (SELECT 1 FROM trace_events
                    WHERE identifier = ANY (identifiers) AND leaf >= p_since)
            -- Links are declared by events with inputs, under the same leaf: a range of
            -- the primary key (the few events since), where trace_links has no leaf index.
            OR (linked AND EXISTS (SELECT 1 FROM trace_events t
                                   WHERE t.leaf >= p_since AND t.inputs <> '{}'))) THEN
        RETURN -1 - v_size;
    END IF;

    FOR r IN SELECT n.level, n.hash FROM generate_series(0, 62) AS g
             JOIN trace_nodes n ON n.level = g AND n.idx = (v_size >> g) - 1
             WHERE (v_size >> g) & 1 = 1 LOOP
        edge[r.level + 1] := r.hash;
        found_nodes := found_nodes + 1;
    END LOOP;
    IF found_nodes <> length(replace(v_size::bit(63)::text, '0', '')) THEN
        RAISE EXCEPTION 'trace_nodes lacks the frontier of a log of % leaves', v_size;
    END IF;

    FOR k IN 1 .. n_events LOOP
        i := v_size + k - 1;
        h := sha256('\x00'::bytea || convert_to(before[k] || i::text || after[k], 'UTF8'));
        hashes[k] := h;
        levels := levels || 0;
        idxs := idxs || i;
        nodes := nodes || h;
        lvl := 0;
        j := i;
        WHILE j & 1 = 1 LOOP
            h := sha256('\x01'::bytea || edge[lvl + 1] || h);
            j := j >> 1;
            lvl := lvl + 1;
            levels := levels || lvl;
            idxs := idxs || j;
            nodes := nodes || h;
        END LOOP;
        edge[lvl + 1] := h;
    END LOOP;

    INSERT INTO trace_events (leaf, identifier, kind, occurred_at, place, actor, attrs,
                              corrects, leaf_hash, inputs, attachments)
    SELECT v_size + e.o - 1, e.identifier, e.kind, e.occurred_at, e.place, p_actor,
           e.attrs::jsonb, e.corrects, hashes[e.o], string_to_array(e.inputs, E'\t'),
           e.attachments::jsonb
    FROM unnest(identifiers, trace_lines(p_kinds),
                trace_lines(p_occurred)::timestamptz[],
                trace_lines(p_places), trace_lines(p_attrs),
                trace_lines(p_corrects, '')::bigint[], inputs,
                trace_lines(p_attachments)) WITH ORDINALITY
         AS e(identifier, kind, occurred_at, place, attrs, corrects, inputs, attachments, o);
    IF NOT FOUND OR cardinality(identifiers) <> n_events OR cardinality(inputs) <> n_events
            OR cardinality(before) <> n_events OR cardinality(after) <> n_events THEN
        RAISE EXCEPTION 'trace_append: % events announced, other counts sent', n_events;
    END IF;
    IF linked THEN
        INSERT INTO trace_links (child, parent, leaf)
        SELECT e.identifier, p.parent, v_size + e.o - 1
        FROM unnest(identifiers, inputs) WITH ORDINALITY AS e(identifier, inputs, o),
             unnest(string_to_array(e.inputs, E'\t')) AS p(parent)
        WHERE e.inputs <> ''
        ORDER BY e.o
        ON CONFLICT DO NOTHING;
    END IF;
    INSERT INTO trace_nodes (level, idx, hash) SELECT * FROM unnest(levels, idxs, nodes);
    UPDATE trace_log SET size = v_size + n_events;
    RETURN v_size;
END $$;
