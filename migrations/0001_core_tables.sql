-- 0001: the workflow engine's core tables, as tasker-core shapes them (upstream-facts.md §1).
--
-- These are the tables the engine writes and this system keeps healthy. Differences from upstream,
-- on purpose: timestamps are timestamptz (upstream used naive timestamps and assumed a UTC server),
-- and every foreign key has an index (archival deletes parents, and an unindexed child lookup per
-- deleted row is what made Airflow's cleanup take hours).

-- uuid v7 (time-ordered) as upstream uses for primary keys. PostgreSQL 18 has uuidv7() built in;
-- PostgreSQL 15-17 do not, so this is a portable definition (RFC 9562 layout: 48-bit unix ms
-- timestamp, version 7, variant 10, random rest).
CREATE OR REPLACE FUNCTION uuid_generate_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;

CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at = CURRENT_TIMESTAMP;
  RETURN NEW;
END
$$;

CREATE TABLE tasker_task_namespaces (
  task_namespace_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  name varchar(64) NOT NULL UNIQUE,
  description varchar(255),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker_named_tasks (
  named_task_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  task_namespace_uuid uuid NOT NULL REFERENCES tasker_task_namespaces (task_namespace_uuid),
  name varchar(64) NOT NULL,
  description varchar(255),
  version varchar(16) NOT NULL DEFAULT '0.1.0',
  -- The whole serialized task template; lifecycle settings live at configuration->'lifecycle'.
  configuration jsonb DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_namespace_uuid, name, version)
);

CREATE TABLE tasker_named_steps (
  named_step_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  name varchar(128) NOT NULL UNIQUE,
  description varchar(255),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker_tasks (
  task_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  named_task_uuid uuid NOT NULL REFERENCES tasker_named_tasks (named_task_uuid),
  complete boolean NOT NULL DEFAULT false,
  requested_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  initiator varchar(128),
  source_system varchar(128),
  reason varchar(128),
  tags jsonb,
  context jsonb,
  identity_hash varchar(128) NOT NULL,
  priority integer NOT NULL DEFAULT 0,
  correlation_id uuid NOT NULL DEFAULT uuid_generate_v7(),
  parent_correlation_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_tasks_named_task_uuid ON tasker_tasks (named_task_uuid);
CREATE INDEX idx_tasks_correlation_id ON tasker_tasks (correlation_id);

CREATE TABLE tasker_workflow_steps (
  workflow_step_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  task_uuid uuid NOT NULL REFERENCES tasker_tasks (task_uuid),
  named_step_uuid uuid NOT NULL REFERENCES tasker_named_steps (named_step_uuid),
  retryable boolean NOT NULL DEFAULT true,
  max_attempts integer DEFAULT 3,
  in_process boolean NOT NULL DEFAULT false,
  processed boolean NOT NULL DEFAULT false,
  processed_at timestamptz,
  attempts integer,
  last_attempted_at timestamptz,
  backoff_request_seconds integer,
  inputs jsonb,
  results jsonb,
  checkpoint jsonb,
  priority integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_workflow_steps_task_uuid ON tasker_workflow_steps (task_uuid);
CREATE INDEX idx_workflow_steps_named_step_uuid ON tasker_workflow_steps (named_step_uuid);

CREATE TABLE tasker_workflow_step_edges (
  workflow_step_edge_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  from_step_uuid uuid NOT NULL REFERENCES tasker_workflow_steps (workflow_step_uuid),
  to_step_uuid uuid NOT NULL REFERENCES tasker_workflow_steps (workflow_step_uuid),
  name varchar(128) NOT NULL DEFAULT 'provides',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_step_edges_from_step_uuid ON tasker_workflow_step_edges (from_step_uuid);
CREATE INDEX idx_step_edges_to_step_uuid ON tasker_workflow_step_edges (to_step_uuid);

CREATE TABLE tasker_task_transitions (
  task_transition_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  task_uuid uuid NOT NULL REFERENCES tasker_tasks (task_uuid),
  to_state varchar NOT NULL,
  from_state varchar,
  metadata jsonb DEFAULT '{}'::jsonb,
  sort_key integer NOT NULL,
  most_recent boolean NOT NULL DEFAULT false,
  processor_uuid uuid,
  transition_metadata jsonb DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chk_task_transitions_to_state CHECK (to_state IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
    'complete', 'error', 'cancelled', 'resolved_manually')),
  CONSTRAINT chk_task_transitions_from_state CHECK (from_state IS NULL OR from_state IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
    'complete', 'error', 'cancelled', 'resolved_manually'))
);
-- One current row per task; the current state is the row with most_recent = true.
CREATE UNIQUE INDEX idx_task_transitions_uuid_most_recent
  ON tasker_task_transitions (task_uuid, most_recent) WHERE most_recent = true;
CREATE UNIQUE INDEX idx_task_transitions_uuid_sort_key ON tasker_task_transitions (task_uuid, sort_key);
CREATE INDEX idx_task_transitions_state_lookup
  ON tasker_task_transitions (task_uuid, to_state, most_recent) WHERE most_recent = true;
-- The working set: the current transition of every task that is not in a terminal state. Staleness
-- detection and the monitoring view read only this index, so their cost follows the number of
-- in-flight tasks, never the number of finished ones.
CREATE INDEX idx_task_transitions_in_flight
  ON tasker_task_transitions (created_at)
  INCLUDE (task_uuid, to_state, sort_key, task_transition_uuid)
  WHERE most_recent = true
    AND to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

CREATE TABLE tasker_workflow_step_transitions (
  workflow_step_transition_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  workflow_step_uuid uuid NOT NULL REFERENCES tasker_workflow_steps (workflow_step_uuid),
  to_state varchar NOT NULL,
  from_state varchar,
  metadata jsonb DEFAULT '{}'::jsonb,
  sort_key integer NOT NULL,
  most_recent boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chk_step_transitions_to_state CHECK (to_state IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry',
    'complete', 'error', 'cancelled', 'resolved_manually')),
  CONSTRAINT chk_step_transitions_from_state CHECK (from_state IS NULL OR from_state IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
    'enqueued_as_error_for_orchestration', 'waiting_for_retry',
    'complete', 'error', 'cancelled', 'resolved_manually'))
);
CREATE UNIQUE INDEX idx_step_transitions_uuid_most_recent
  ON tasker_workflow_step_transitions (workflow_step_uuid, most_recent) WHERE most_recent = true;
CREATE UNIQUE INDEX idx_step_transitions_uuid_sort_key
  ON tasker_workflow_step_transitions (workflow_step_uuid, sort_key);

CREATE TRIGGER update_task_namespaces_updated_at BEFORE UPDATE ON tasker_task_namespaces
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TRIGGER update_named_tasks_updated_at BEFORE UPDATE ON tasker_named_tasks
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Compare-and-swap state change (upstream TAS-41/TAS-54 semantics): the current row is locked, and
-- the new row is written only if the task is still in p_from_state. processor_uuid is audit-only.
-- Returns whether the transition happened. A task whose state moved on simply returns false.
CREATE OR REPLACE FUNCTION transition_task_state_atomic(
  p_task_uuid uuid,
  p_from_state varchar,
  p_to_state varchar,
  p_processor_uuid uuid,
  p_metadata jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_current_uuid uuid;
  v_current_state varchar;
  v_next_sort_key integer;
BEGIN
  SELECT task_transition_uuid, to_state
    INTO v_current_uuid, v_current_state
    FROM tasker_task_transitions
   WHERE task_uuid = p_task_uuid AND most_recent = true
   FOR UPDATE;

  IF NOT FOUND OR v_current_state IS DISTINCT FROM p_from_state THEN
    RETURN false;
  END IF;

  SELECT coalesce(max(sort_key), 0) + 1 INTO v_next_sort_key
    FROM tasker_task_transitions WHERE task_uuid = p_task_uuid;

  UPDATE tasker_task_transitions
     SET most_recent = false, updated_at = now()
   WHERE task_transition_uuid = v_current_uuid;

  INSERT INTO tasker_task_transitions
    (task_uuid, to_state, from_state, sort_key, most_recent, processor_uuid, transition_metadata)
  VALUES
    (p_task_uuid, p_to_state, p_from_state, v_next_sort_key, true, p_processor_uuid,
     coalesce(p_metadata, '{}'::jsonb));

  RETURN true;
END
$$;
