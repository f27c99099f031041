-- The flow store: raw flow records partitioned by day, interned label sets and policy traces,
-- the rollups the flow graph and the policy board read (maintained at ingest, in the batch's
-- transaction), rejected lines, ingestion bookkeeping (idempotency, tailer offsets) and the
-- inventory of namespaces and workloads seen in flows.
--
-- Times are stored as timestamptz and partitions are cut at UTC midnight. Partitions are created
-- ahead of time by ensure_flow_partitions() (the collector calls it) and dropped whole by
-- drop_flow_partitions() (retention).

-- Label sets ("k=v" sorted) and policy traces repeat across millions of records: each distinct
-- value is stored once, keyed by 64 bits of BLAKE2b over its canonical text. The writer computes
-- the key itself, so a batch needs no round trip to learn ids; a collision is detected at insert.
CREATE TABLE label_sets (
    id bigint PRIMARY KEY,
    labels text[] NOT NULL
);

CREATE TABLE trace_sets (
    id bigint PRIMARY KEY,
    enforced text[] NOT NULL,  -- policy-hit strings in Enterprise form, in trace order
    pending text[] NOT NULL
);

-- One row per hit of a trace set, parsed, so filters and the per-policy rollup need no string work.
-- name is the tier-qualified policy name as ringfence.model.resource_key spells it.
CREATE TABLE trace_hits (
    trace_set bigint NOT NULL REFERENCES trace_sets (id) ON DELETE CASCADE,
    pending boolean NOT NULL,
    position smallint NOT NULL,
    tier text NOT NULL,
    kind text NOT NULL,
    namespace text,
    name text NOT NULL,
    action text NOT NULL,
    rule_index integer,  -- NULL when the log had no rule index (older Enterprise logs)
    PRIMARY KEY (trace_set, pending, position)
);
CREATE INDEX trace_hits_policy ON trace_hits (name, tier);

CREATE SEQUENCE flows_id_seq AS bigint CACHE 128;

CREATE TABLE flows (
    id bigint NOT NULL DEFAULT nextval('flows_id_seq'),
    start_time timestamptz NOT NULL,
    end_time timestamptz NOT NULL,
    reporter text NOT NULL,
    action text NOT NULL,
    proto text NOT NULL,
    src_type text NOT NULL,
    src_namespace text,
    src_name text,
    src_name_aggr text NOT NULL,
    src_ip inet,
    src_port integer,
    src_labels bigint,  -- label_sets.id; NULL for no labels
    src_service_account text,
    dst_type text NOT NULL,
    dst_namespace text,
    dst_name text,
    dst_name_aggr text NOT NULL,
    dst_ip inet,
    dst_port integer,
    dst_labels bigint,
    dst_service_account text,
    dst_domains text[],  -- NULL for none
    dst_service_namespace text,
    dst_service_name text,
    dst_service_port text,
    dst_service_port_num integer,
    host text,
    num_flows bigint NOT NULL,
    num_flows_started bigint NOT NULL,
    num_flows_completed bigint NOT NULL,
    packets_in bigint NOT NULL,
    packets_out bigint NOT NULL,
    bytes_in bigint NOT NULL,
    bytes_out bigint NOT NULL,
    http_requests_allowed_in bigint NOT NULL,
    http_requests_denied_in bigint NOT NULL,
    trace_set bigint  -- trace_sets.id; NULL for an empty trace
) PARTITION BY RANGE (start_time);
ALTER SEQUENCE flows_id_seq OWNED BY flows.id;

-- Keyset pagination walks (start_time, id) backwards; the namespace indexes serve the common
-- "flows of one namespace" filter without scanning the whole window.
CREATE INDEX flows_time ON flows (start_time, id);
CREATE INDEX flows_src_namespace ON flows (src_namespace, start_time);
CREATE INDEX flows_dst_namespace ON flows (dst_namespace, start_time);

-- Flow graph rollup: per 5-minute bucket of start_time and edge. Workload endpoints are keyed by
-- name_aggr, networks by pub/pvt, network sets by their name; the types say which.
CREATE TABLE flow_edges_5m (
    bucket timestamptz NOT NULL,
    src_type text NOT NULL,
    src_namespace text,
    src_name_aggr text NOT NULL,
    dst_type text NOT NULL,
    dst_namespace text,
    dst_name_aggr text NOT NULL,
    dst_port integer,
    proto text NOT NULL,
    action text NOT NULL,
    reporter text NOT NULL,
    records bigint NOT NULL,
    num_flows numeric NOT NULL,
    packets_in numeric NOT NULL,
    packets_out numeric NOT NULL,
    bytes_in numeric NOT NULL,
    bytes_out numeric NOT NULL
) PARTITION BY RANGE (bucket);
-- The key leads with the source namespace so that it also serves "edges of a namespace" lookups;
-- the destination side has its own index. Two indexes only: every batch updates rollup rows.
CREATE UNIQUE INDEX flow_edges_5m_key ON flow_edges_5m (
    src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
    dst_port, proto, action, reporter
) NULLS NOT DISTINCT;
CREATE INDEX flow_edges_5m_dst_namespace ON flow_edges_5m (dst_namespace, bucket);

-- Policy board rollup: per 5-minute bucket and policy hit. pending tells which trace the hit came
-- from (pending_policies, the staged view); staged policies are those of the kinds snp, sgnp, sknp.
CREATE TABLE policy_hits_5m (
    bucket timestamptz NOT NULL,
    pending boolean NOT NULL,
    tier text NOT NULL,
    kind text NOT NULL,
    namespace text,
    name text NOT NULL,
    rule_index integer,
    action text NOT NULL,
    records bigint NOT NULL,
    num_flows numeric NOT NULL,
    packets numeric NOT NULL,
    bytes numeric NOT NULL
) PARTITION BY RANGE (bucket);
CREATE UNIQUE INDEX policy_hits_5m_key ON policy_hits_5m (
    bucket, pending, tier, kind, namespace, name, rule_index, action
) NULLS NOT DISTINCT;

-- The same per hour: a day of the board reads 24 rows per hit instead of 288 (the 5-minute rollup
-- still serves the ragged ends of a window).
CREATE TABLE policy_hits_1h (LIKE policy_hits_5m) PARTITION BY RANGE (bucket);
CREATE UNIQUE INDEX policy_hits_1h_key ON policy_hits_1h (
    bucket, pending, tier, kind, namespace, name, rule_index, action
) NULLS NOT DISTINCT;

-- Lines the collector could not store, with where they came from and why.
CREATE TABLE flow_rejects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    source text NOT NULL,
    line_no bigint,
    byte_offset bigint,
    raw text NOT NULL,  -- truncated at 4 KiB, see raw_truncated
    raw_truncated boolean NOT NULL,
    reason text NOT NULL,
    field text
);
CREATE INDEX flow_rejects_received_at ON flow_rejects (received_at);

-- Idempotency: one row per stored batch, keyed by its source and a key that names the batch (file
-- identity and offset range, or the client's Idempotency-Key). A retried batch finds its row and is
-- answered with the stored outcome instead of being stored again.
CREATE TABLE ingest_batches (
    source text NOT NULL,
    batch_key text NOT NULL,
    accepted integer NOT NULL,
    rejected integer NOT NULL,
    errors jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (source, batch_key)
);
CREATE INDEX ingest_batches_received_at ON ingest_batches (received_at);

-- Where each tailed file stands, written in the transaction of the batch that advanced it.
CREATE TABLE ingest_offsets (
    source text PRIMARY KEY,
    file_id text NOT NULL,  -- device:inode of the file being read
    position bigint NOT NULL,  -- byte offset after the last stored line
    line_no bigint NOT NULL,  -- lines read from that file so far
    updated_at timestamptz NOT NULL
);

-- Inventory of what flows have shown, so namespace selectors and the graph have something to
-- stand on before any cluster sync. labels NULL means not known (flow logs do not carry
-- namespace labels).
CREATE TABLE inventory_namespaces (
    name text PRIMARY KEY,
    labels text[],
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);

CREATE TABLE inventory_workloads (
    namespace text NOT NULL,
    name_aggr text NOT NULL,
    labels text[] NOT NULL,  -- the labels of the most recent flow that carried any
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (namespace, name_aggr)
);

-- Daily partitions, named <table>_pYYYYMMDD, for flows and its rollups.
CREATE FUNCTION ensure_flow_partitions(first_day date, last_day date) RETURNS integer
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
        FOREACH parent IN ARRAY ARRAY['flows', 'flow_edges_5m', 'policy_hits_5m', 'policy_hits_1h'] LOOP
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

-- Drop the partitions that end at or before cutoff; returns their names.
CREATE FUNCTION drop_flow_partitions(cutoff timestamptz) RETURNS SETOF text
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
            'flows'::regclass, 'flow_edges_5m'::regclass, 'policy_hits_5m'::regclass, 'policy_hits_1h'::regclass
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
