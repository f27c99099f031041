-- 0003: what the workers keep: job leases, policy statistics computed by evaluation, and the scopes
-- of continuous recommendations.

-- Each attempt at a job holds a lease; writes of an attempt that lost it (presumed dead, then taken
-- over) are ignored. worker is "<host>:<pid>" of the holder, so a redelivered task on the same host
-- can tell at once that the holder died.
ALTER TABLE jobs ADD COLUMN lease uuid;
ALTER TABLE jobs ADD COLUMN worker text;
CREATE INDEX jobs_running_heartbeat ON jobs (heartbeat_at) WHERE state = 'running';
COMMENT ON COLUMN jobs.lease IS 'The attempt currently holding the job; NULL when none does.';

-- Statistics by evaluation, for policies the flow log could not record (created after the flows):
-- the same shape as policy_hits_5m (which holds what the log recorded). staged_view tells the view
-- the hit comes from: the staged view evaluates staged policies as if enforced.
CREATE TABLE policy_stats_5m (
    bucket timestamptz NOT NULL,
    staged_view boolean NOT NULL,
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
);
CREATE UNIQUE INDEX policy_stats_5m_key ON policy_stats_5m (
    bucket, staged_view, tier, kind, namespace, name, rule_index, action
) NULLS NOT DISTINCT;
CREATE INDEX policy_stats_5m_policy ON policy_stats_5m (name, tier, bucket);
COMMENT ON TABLE policy_stats_5m IS 'Per 5-minute bucket and policy rule: flows counted by evaluating stored flows.';

-- Which buckets are up to date: evaluated over `records` stored records with the resources at
-- `generation` (services.common.db.resources.generation). A bucket is evaluated again when either
-- changes: new or late flows, or any resource change.
CREATE TABLE policy_stats_buckets (
    bucket timestamptz PRIMARY KEY,
    records bigint NOT NULL,
    generation bigint NOT NULL,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);

-- Namespaces that get recommendations continuously (Calico Enterprise's PolicyRecommendationScope):
-- every namespace whose labels match namespace_selector, refined every run of the beat task.
CREATE TABLE recommendation_scopes (
    name text PRIMARY KEY CHECK (name <> ''),
    namespace_selector text NOT NULL,
    tier text NOT NULL DEFAULT 'default',
    stabilization_seconds integer NOT NULL DEFAULT 600 CHECK (stabilization_seconds > 0),
    window_seconds integer NOT NULL DEFAULT 86400 CHECK (window_seconds > 0),
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE recommendation_scopes IS 'Namespaces selected here get a namespace-isolation recommendation, kept up to date.';
