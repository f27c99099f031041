-- 0004: the flow-graph rollup per hour, as policy_hits_1h is to policy_hits_5m: a day of the graph
-- reads 24 rows per edge instead of 288 (flow_edges_5m still serves the ragged ends of a window).
-- Maintained at ingest in the batch's rollup statement; its daily partitions are created and dropped
-- with the others (the partition functions are replaced below to include it).

CREATE TABLE flow_edges_1h (LIKE flow_edges_5m) PARTITION BY RANGE (bucket);
CREATE UNIQUE INDEX flow_edges_1h_key ON flow_edges_1h (
    src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
    dst_port, proto, action, reporter
) NULLS NOT DISTINCT;
CREATE INDEX flow_edges_1h_dst_namespace ON flow_edges_1h (dst_namespace, bucket);

-- As in 0002, with flow_edges_1h added to the parents.
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
                -- Rollup rows are updated by every batch that adds to them: room on each page lets
                -- those updates be heap-only (no index writes).
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = %s)',
                    child, parent,
                    day::timestamp AT TIME ZONE 'UTC',
                    (day + 1)::timestamp AT TIME ZONE 'UTC',
                    CASE WHEN parent = 'flows' THEN 100 ELSE 50 END
                );
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

CREATE OR REPLACE FUNCTION drop_flow_partitions(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ringfence.flow_partitions'));
    FOR part IN
        SELECT child.oid::regclass AS relation, child.relname::text AS name
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        WHERE parent.oid IN (
            'flows'::regclass, 'flow_edges_5m'::regclass, 'flow_edges_1h'::regclass, 'policy_hits_5m'::regclass,
            'policy_hits_1h'::regclass
        )
          AND child.relname ~ '_p[0-9]{8}$'
          AND (to_date(right(child.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
        ORDER BY child.relname
    LOOP
        EXECUTE format('DROP TABLE %s', part.relation);
        RETURN NEXT part.name;
    END LOOP;
END
$$;

-- Flows stored before this migration: give each day of the 5-minute rollup its hourly partition and
-- fill it from the 5-minute rows (hours are UTC hours, whatever the session's time zone).
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT to_date(right(child.relname, 8), 'YYYYMMDD')
        FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = 'flow_edges_5m'::regclass AND child.relname ~ '_p[0-9]{8}$'
    LOOP
        PERFORM ensure_flow_partitions(day, day);
    END LOOP;
END
$$;

INSERT INTO flow_edges_1h (
    src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
    dst_port, proto, action, reporter, records, num_flows, packets_in, packets_out, bytes_in, bytes_out
)
SELECT src_namespace, date_bin('1 hour', bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00'), src_name_aggr, src_type,
       dst_namespace, dst_name_aggr, dst_type, dst_port, proto, action, reporter,
       sum(records), sum(num_flows), sum(packets_in), sum(packets_out), sum(bytes_in), sum(bytes_out)
FROM flow_edges_5m
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11;
