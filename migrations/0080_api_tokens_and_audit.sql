-- 0080: API tokens and the audit log (issue 11).
--
-- tasker_api_tokens: bearer tokens of the HTTP API, shared by every `web` process through the
-- database. The secret is never stored: only its SHA-256 (secrets are 256 random bits, so a plain
-- hash is enough; no salt or slow hash needed). A token is found by its public token_id (the part of
-- the secret before the second underscore) and its hash compared in constant time by the server.
-- Revoked tokens stay (for the audit log); a name is unique among tokens not revoked.
CREATE TABLE tasker_api_tokens (
  token_id text PRIMARY KEY CHECK (token_id ~ '^[0-9a-f]{16}$'),
  name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
  permissions text[] NOT NULL CHECK (
    cardinality(permissions) > 0
    AND permissions <@ ARRAY['dlq:read', 'dlq:update', 'dlq:stats', 'jobs:read', 'jobs:run', 'archive:read',
                             'archive:restore', 'audit:read', '*']::text[]),
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  expires_at timestamptz,
  revoked_at timestamptz,
  revoked_by text,
  CHECK (expires_at IS NULL OR expires_at > created_at),
  CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
-- token revoke NAME, token create (name taken?): the live token of a name.
CREATE UNIQUE INDEX idx_api_tokens_live_name ON tasker_api_tokens (name) WHERE revoked_at IS NULL;
-- token list: newest first.
CREATE INDEX idx_api_tokens_created ON tasker_api_tokens (created_at DESC);

-- tasker_audit_log: every change made through the API, the CLI or the console, written in the same
-- transaction as the change. actor is the token name (API), the --by name or OS user (CLI), or the
-- console user; action says what was done (dlq.resolve, dlq.add, dlq.bulk_resolve, job.enqueue,
-- job.retry, archive.restore, token.create, token.revoke, ...); target_kind/target_id say on what;
-- before/after hold the values changed.
CREATE TABLE tasker_audit_log (
  audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL,
  actor text NOT NULL CHECK (actor <> ''),
  actor_kind text NOT NULL CHECK (actor_kind IN ('token', 'cli', 'console')),
  action text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  target_kind text NOT NULL CHECK (target_kind IN ('dlq_entry', 'dlq_filter', 'task', 'job', 'token')),
  target_id text NOT NULL,
  before jsonb,
  after jsonb,
  details jsonb
);
-- audit / GET /v1/audit: newest first, optionally since a time.
CREATE INDEX idx_audit_log_at ON tasker_audit_log (at DESC, audit_id DESC);
-- ... by one actor.
CREATE INDEX idx_audit_log_actor_at ON tasker_audit_log (actor, at DESC, audit_id DESC);
-- ... on one entry or task (the console's history of an entry).
CREATE INDEX idx_audit_log_target ON tasker_audit_log (target_kind, target_id, at DESC);

-- Following an enqueued run (GET /v1/jobs/{job}/runs/{id}): its history rows by pg-boss job id.
CREATE INDEX idx_job_runs_pgboss_job ON tasker_job_runs (pgboss_job_id);
