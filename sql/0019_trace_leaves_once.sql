-- The tree's leaves are stored once. trace_nodes held every leaf hash (level 0) a second time,
-- beside trace_events.leaf_hash: one row and one primary-key entry more for every event, under
-- the log's lock. Level 0 is now read from trace_events (the frontier's last leaf here; proofs
-- in idnode.store.trace), and trace_nodes holds levels 1 and up: half its rows, and 4.6-6 us
-- less of PostgreSQL's CPU an append event (measured: trace_append of 100 events a call, server
-- CPU per event, 34-38 -> 30-32 us).
--
-- Before the level-0 rows go, each is checked against its event's leaf_hash: a log whose two
-- copies disagree is not silently rewritten (the migration fails and changes nothing). On a
-- large log the DELETE is a one-time cost of this migration.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM trace_nodes n LEFT JOIN trace_events e ON e.leaf = n.idx
               WHERE n.level = 0 AND (e.leaf IS NULL OR e.leaf_hash <> n.hash)) THEN
        RAISE EXCEPTION 'trace_nodes level 0 disagrees with trace_events.leaf_hash';
    END IF;
END $$;
DELETE FROM trace_nodes WHERE level = 0;

-- trace_append as in 0016_trace_append.sql, but for where level 0 comes from and goes.
CREATE OR REPLACE FUNCTION trace_append(
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

    FOR r IN SELECT n.level, n.hash FROM generate_series(1, 62) AS g
             JOIN trace_nodes n ON n.level = g AND n.idx = (v_size >> g) - 1
             WHERE (v_size >> g) & 1 = 1
             UNION ALL
             -- Level 0 of the frontier is the last leaf, when the size is odd.
             SELECT 0, e.leaf_hash FROM trace_events e
             WHERE v_size & 1 = 1 AND e.leaf = v_size - 1 LOOP
        edge[r.level + 1] := r.hash;
        found_nodes := found_nodes + 1;
    END LOOP;
    IF found_nodes <> length(replace(v_size::bit(63)::text, '0', '')) THEN
        RAISE EXCEPTION 'trace_nodes (or trace_events, for its last leaf) lacks the frontier of a log of % leaves', v_size;
    END IF;

    FOR k IN 1 .. n_events LOOP
        i := v_size + k - 1;
        h := sha256('\x00'::bytea || convert_to(before[k] || i::text || after[k], 'UTF8'));
        hashes[k] := h;
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
