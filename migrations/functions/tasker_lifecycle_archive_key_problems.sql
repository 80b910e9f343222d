-- The foreign keys archival relies on that the database does not enforce as it needs them, one row
-- each, with what to run. Archival moves a graph while holding its task and steps FOR UPDATE; a row
-- the engine adds to that graph meanwhile (a step, a transition, an edge, a DLQ entry) takes FOR KEY
-- SHARE on its parent through the child's foreign key, so it waits for the move and then finds its
-- parent gone, instead of being left live and orphaned. So each child -> parent key must exist
-- (one key on exactly that column, referencing exactly the parent's key column), be validated (a
-- NOT VALID key never checked the rows that were there before it, so a child may already point at
-- no parent; PostgreSQL 18's NOT ENFORCED keys check nothing at all and are NOT VALID too), not be
-- DEFERRABLE (its check, and the wait on the parent with it, can be put off to the inserting
-- transaction's commit; archival's reasoning and tests assume the check at the insert), and have
-- its triggers enabled (ALTER TABLE ... DISABLE TRIGGER ALL turns a key's checks off, and then a
-- row inserted during a move is left orphaned). No rows: all hold. Where several keys cover one column, one that holds is enough. Catalog reads only;
-- archive_completed_tasks checks them before every batch (tasker_lifecycle_archive_refusals), and
-- `migrate` and `status` report them (src/db/queries/engine-schema.ts).
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_key_problems()
RETURNS TABLE (foreign_key text, problem text)
-- plpgsql, so that the query's plan is kept for the session (a SQL function's is made again at
-- every call: 2 ms of the 2.5 ms this check took before every batch)
LANGUAGE plpgsql STABLE ROWS 5 AS $$
BEGIN
  RETURN QUERY
  WITH wanted (n, child, child_column, parent, parent_column) AS (
    VALUES (1, 'tasker_workflow_steps', 'task_uuid', 'tasker_tasks', 'task_uuid'),
           (2, 'tasker_task_transitions', 'task_uuid', 'tasker_tasks', 'task_uuid'),
           (3, 'tasker_workflow_step_transitions', 'workflow_step_uuid', 'tasker_workflow_steps', 'workflow_step_uuid'),
           (4, 'tasker_workflow_step_edges', 'from_step_uuid', 'tasker_workflow_steps', 'workflow_step_uuid'),
           (5, 'tasker_workflow_step_edges', 'to_step_uuid', 'tasker_workflow_steps', 'workflow_step_uuid'),
           (6, 'tasker_tasks_dlq', 'task_uuid', 'tasker_tasks', 'task_uuid')
  ),
  keys AS (
    SELECT w.n, c.conname, c.convalidated, c.condeferrable,
           -- PostgreSQL 18's pg_constraint.conenforced, read so that older servers need no such column
           coalesce((to_jsonb(c) ->> 'conenforced')::boolean, true) AS enforced,
           (SELECT string_agg(format('ALTER TABLE %s ENABLE TRIGGER %I', t.tgrelid::regclass, t.tgname),
                              '; ' ORDER BY t.tgname)
              FROM pg_trigger t WHERE t.tgconstraint = c.oid AND t.tgenabled = 'D') AS enable_triggers
      FROM wanted w
      JOIN pg_constraint c
        ON c.contype = 'f'
       AND c.conrelid = to_regclass(w.child)
       AND c.confrelid = to_regclass(w.parent)
       AND c.conkey = (SELECT ARRAY[a.attnum] FROM pg_attribute a
                        WHERE a.attrelid = to_regclass(w.child) AND a.attname = w.child_column)
       AND c.confkey = (SELECT ARRAY[a.attnum] FROM pg_attribute a
                         WHERE a.attrelid = to_regclass(w.parent) AND a.attname = w.parent_column)
  ),
  best AS (
    -- the key that comes closest to holding: fewest problems, then by name
    SELECT DISTINCT ON (k.n) k.*
      FROM keys k
     ORDER BY k.n, (NOT k.enforced)::int + (NOT k.convalidated)::int + k.condeferrable::int
                   + (k.enable_triggers IS NOT NULL)::int,
              k.conname
  )
  SELECT format('%s (%I) -> %s (%I)', w.child, w.child_column, w.parent, w.parent_column),
         CASE
           WHEN b.n IS NULL THEN
             format('missing: add it with ALTER TABLE %1$s ADD CONSTRAINT %5$I FOREIGN KEY (%2$I) REFERENCES %3$s (%4$I) NOT VALID, then ALTER TABLE %1$s VALIDATE CONSTRAINT %5$I',
                    w.child, w.child_column, w.parent, w.parent_column,
                    w.child || '_' || w.child_column || '_fkey')
           ELSE concat_ws('; ',
             CASE WHEN NOT b.enforced THEN
               format('NOT ENFORCED (%I): run ALTER TABLE %s ALTER CONSTRAINT %I ENFORCED', b.conname, w.child, b.conname)
                  WHEN NOT b.convalidated THEN
               format('NOT VALID (%I): run ALTER TABLE %s VALIDATE CONSTRAINT %I', b.conname, w.child, b.conname) END,
             CASE WHEN b.condeferrable THEN
               format('DEFERRABLE (%I): run ALTER TABLE %s ALTER CONSTRAINT %I NOT DEFERRABLE', b.conname, w.child, b.conname) END,
             CASE WHEN b.enable_triggers IS NOT NULL THEN
               format('not enforced, its triggers are disabled (%I): run %s', b.conname, b.enable_triggers) END)
         END
    FROM wanted w
    LEFT JOIN best b ON b.n = w.n
   WHERE b.n IS NULL OR NOT b.enforced OR NOT b.convalidated OR b.condeferrable OR b.enable_triggers IS NOT NULL
   ORDER BY w.n;
END
$$;
