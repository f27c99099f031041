-- 0005: the 5-minute rollups take each batch's partial sums as appended rows (COPY) instead of
-- upserts, and the hourly rollups are rebuilt from them once an hour has settled.
--
-- Upserting a batch's rollup rows cost PostgreSQL twice the COPY of the flows themselves (on
-- bench/ingest.py's data a 5,000-record batch upserted ~6,800 rollup rows: 2,540 five-minute edges,
-- 2,100 hourly edges, 1,240 and 1,020 policy hits). Now a batch appends its partial sums to
-- flow_edges_5m and policy_hits_5m with COPY, in its transaction as before, and marks the UTC hours it
-- touched in rollup_hours_pending. Readers sum what they read (they always grouped), so several rows
-- for one key and bucket change no answer. Compaction (services.common.db.rollup_hours) later merges
-- an hour's partial rows and rebuilds its rows of flow_edges_1h and policy_hits_1h; until then readers
-- take a pending hour from the 5-minute rollups.
--
-- Writers and compaction meet on an advisory lock per hour: a batch holds it shared for its
-- transaction, compaction takes it exclusively or leaves the hour for its next round.

-- Unique keys served the upserts; appended partial sums repeat keys. Namespace and time lookups stay.
DROP INDEX flow_edges_5m_key;
CREATE INDEX flow_edges_5m_src_namespace ON flow_edges_5m (src_namespace, bucket);
DROP INDEX policy_hits_5m_key;
CREATE INDEX policy_hits_5m_bucket ON policy_hits_5m (bucket);

-- The collector encodes 64-bit integers for COPY far faster than numerics. A batch's sums stay below
-- 2**63 (a record's counters are below 2**48); a batch that would overflow is stored row by row, and a
-- merge that would overflow is skipped. The hourly rollups keep numeric sums.
ALTER TABLE flow_edges_5m
    ALTER COLUMN num_flows TYPE bigint,
    ALTER COLUMN packets_in TYPE bigint,
    ALTER COLUMN packets_out TYPE bigint,
    ALTER COLUMN bytes_in TYPE bigint,
    ALTER COLUMN bytes_out TYPE bigint;
ALTER TABLE policy_hits_5m
    ALTER COLUMN num_flows TYPE bigint,
    ALTER COLUMN packets TYPE bigint,
    ALTER COLUMN bytes TYPE bigint;

-- UTC hours (their start) whose hourly rows do not include every 5-minute row yet.
CREATE TABLE rollup_hours_pending (
    hour timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL  -- when a batch first touched the hour since its last compaction
);

-- As in 0004, with every partition packed full: no rollup row is updated in place any more.
CREATE OR REPLACE FUNCTION ensure_flow_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    parent text;
    child text;
    created integer := 0;
BEGIN
    IF last_day < first_day THEN
        RETURN 0;
    END IF;
    IF last_day - first_day > 400 THEN
        RAISE EXCEPTION 'refusing to create % daily partitions at once', last_day - first_day + 1;
    END IF;
    -- Two collectors creating the same partition would collide in the catalog: take turns.
    PERFORM pg_advisory_xact_lock(hashtext('ringfence.flow_partitions'));
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH parent IN ARRAY ARRAY['flows', 'flow_edges_5m', 'flow_edges_1h', 'policy_hits_5m', 'policy_hits_1h'] LOOP
            child := parent || '_p' || to_char(day, 'YYYYMMDD');
            IF to_regclass(quote_ident(child)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    child, parent,
                    day::timestamp AT TIME ZONE 'UTC',
                    (day + 1)::timestamp AT TIME ZONE 'UTC'
                );
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
