-- 0001: resources and their history, the audit log, API tokens and jobs.
-- Flow tables come in later migrations. Applied in one transaction by `ringfence migrate`.

-- Every change to a resource takes the next value: one cluster-wide, ever-increasing counter, like
-- Kubernetes' resourceVersion, so a client can tell "newer than" across kinds.
CREATE SEQUENCE resource_version_seq AS bigint;

CREATE TABLE resources (
    kind             text        NOT NULL,
    namespace        text        NOT NULL DEFAULT '',
    name             text        NOT NULL,
    resource_version bigint      NOT NULL DEFAULT nextval('resource_version_seq'),
    spec             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, namespace, name),
    CHECK (kind <> '' AND name <> ''),
    CHECK (jsonb_typeof(spec) = 'object')
);
COMMENT ON TABLE resources IS 'The current document of every resource (Calico, Kubernetes NetworkPolicy, Namespace).';
COMMENT ON COLUMN resources.kind IS 'Kubernetes kind as in the API: GlobalNetworkPolicy, KubernetesNetworkPolicy, Tier, ...';
COMMENT ON COLUMN resources.namespace IS 'Empty string for cluster-scoped (global) resources, so the key stays unique.';
COMMENT ON COLUMN resources.spec IS 'The whole calicoctl-style document (apiVersion, kind, metadata, spec).';

CREATE TABLE resource_versions (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL,
    namespace        text        NOT NULL DEFAULT '',
    name             text        NOT NULL,
    resource_version bigint      NOT NULL,
    change           text        NOT NULL CHECK (change IN ('create', 'update', 'delete')),
    spec             jsonb       NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    changed_by       text        NOT NULL,
    changed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, namespace, name, resource_version)
);
COMMENT ON TABLE resource_versions IS 'History: one row per version of each resource, kept after the resource is deleted.';
COMMENT ON COLUMN resource_versions.spec IS 'The document as of this version; for a delete, the last document.';

CREATE TABLE audit_log (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    kind      text,
    namespace text,
    name      text,
    before    jsonb,
    after     jsonb
);
CREATE INDEX audit_log_resource ON audit_log (kind, namespace, name, id);
COMMENT ON TABLE audit_log IS 'Who did what, when; newest first by id. kind/namespace/name are NULL for actions on no resource.';

CREATE TABLE api_tokens (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL CHECK (name <> ''),
    role         text        NOT NULL CHECK (role IN ('admin', 'tier-admin', 'developer', 'viewer')),
    tiers        text[]      NOT NULL DEFAULT '{}',
    namespaces   text[]      NOT NULL DEFAULT '{}',
    token_hash   text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_name ON api_tokens (name);
COMMENT ON COLUMN api_tokens.token_hash IS 'Lower-case hex SHA-256 of the token; the token itself is never stored.';

CREATE TABLE jobs (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text        NOT NULL,
    params       jsonb       NOT NULL DEFAULT '{}',
    state        text        NOT NULL DEFAULT 'queued'
                             CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress     real        NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    error        text,
    result       jsonb,
    requested_by text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE state IN ('queued', 'running');
COMMENT ON COLUMN jobs.progress IS 'Fraction done, from 0 to 1.';
COMMENT ON COLUMN jobs.heartbeat_at IS 'Last sign of life from the worker running it; a stale heartbeat means a lost worker.';
