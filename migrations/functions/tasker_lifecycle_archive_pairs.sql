-- The live tables and their archive tables, children after parents.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_pairs()
RETURNS TABLE (live_table text, archive_table text)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('tasker_tasks', 'tasker_tasks_archive'),
         ('tasker_task_transitions', 'tasker_task_transitions_archive'),
         ('tasker_tasks_dlq', 'tasker_tasks_dlq_archive'),
         ('tasker_workflow_steps', 'tasker_workflow_steps_archive'),
         ('tasker_workflow_step_edges', 'tasker_workflow_step_edges_archive'),
         ('tasker_workflow_step_transitions', 'tasker_workflow_step_transitions_archive')
$$;
