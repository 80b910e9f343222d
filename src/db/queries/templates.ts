import type { Db } from '../pool.ts';

/**
 * Task templates (tasker_named_tasks) and their namespaces (tasker_task_namespaces), looked up by
 * name: the filters an operator types (`--namespace`, `--template`) are checked here before a run
 * is queued, so a filter that matches nothing is bad input rather than a run that fails forever.
 */
export interface TemplateFilter {
  namespace?: string | null | undefined;
  taskName?: string | null | undefined;
}

export interface TemplateFilterCheck {
  /** Templates (any version) the filter matches. */
  matches: number;
  /** The namespace asked for exists (true when none was asked for). */
  namespace_exists: boolean;
  /** A few names that do exist, for the message when nothing matches. */
  namespaces: string[];
  templates: string[];
}

const SAMPLE = 10;

/**
 * How many templates match; with samples of existing names. Both tables are keyed by name
 * (tasker_task_namespaces.name unique, tasker_named_tasks (task_namespace_uuid, name, version)
 * unique), and the samples are bounded.
 */
export async function checkTemplateFilter(db: Db, filter: TemplateFilter): Promise<TemplateFilterCheck> {
  const { rows } = await db.query<TemplateFilterCheck>(
    `SELECT (SELECT count(*)
               FROM tasker_named_tasks nt
               JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
              WHERE ($1::text IS NULL OR ns.name = $1) AND ($2::text IS NULL OR nt.name = $2)) AS matches,
            ($1::text IS NULL OR EXISTS (SELECT 1 FROM tasker_task_namespaces WHERE name = $1)) AS namespace_exists,
            ARRAY(SELECT name FROM tasker_task_namespaces ORDER BY name LIMIT $3) AS namespaces,
            ARRAY(SELECT DISTINCT nt.name
                    FROM tasker_named_tasks nt
                    JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
                   WHERE $1::text IS NULL OR ns.name = $1
                   ORDER BY nt.name LIMIT $3) AS templates`,
    [filter.namespace ?? null, filter.taskName ?? null, SAMPLE],
  );
  return rows[0]!;
}

/** The problem with a filter that matches no template, naming what exists; undefined when it matches. */
export function templateFilterProblem(
  filter: TemplateFilter,
  check: TemplateFilterCheck,
  /** How the filter's fields are named where they were typed (the CLI's flags by default). */
  labels: { namespace: string; taskName: string } = { namespace: '--namespace', taskName: '--template' },
): string | undefined {
  if (check.matches > 0 || (filter.namespace == null && filter.taskName == null)) return undefined;
  const asked = [
    filter.namespace != null ? `${labels.namespace} ${JSON.stringify(filter.namespace)}` : undefined,
    filter.taskName != null ? `${labels.taskName} ${JSON.stringify(filter.taskName)}` : undefined,
  ]
    .filter(Boolean)
    .join(' with ');
  // The names shown, with "…" when there may be more than the sample.
  const more = (list: string[]) => `${list.join(', ')}${list.length === SAMPLE ? ', …' : ''}`;
  const known =
    !check.namespace_exists && check.namespaces.length > 0
      ? `namespaces: ${more(check.namespaces)}`
      : check.templates.length > 0
        ? `templates${filter.namespace != null ? ` in ${filter.namespace}` : ''}: ${more(check.templates)}`
        : 'there are no task templates';
  return `${asked} matches no task template (${known})`;
}

export interface TaskTemplate {
  named_task_uuid: string;
  namespace: string;
  name: string;
  version: string;
  /** configuration->'lifecycle' as the engine has it now (null when absent). */
  lifecycle: unknown;
  /** What is wrong with it (lifecycle_config_problems): detection used the defaults for those keys. */
  problems: string[];
}

/**
 * The template of a live task, with its lifecycle settings as they are now and their problems
 * (tasker_tasks_pkey, then the primary keys of tasker_named_tasks and tasker_task_namespaces);
 * undefined when the task is not live (archived, or unknown).
 */
export async function templateOfTask(db: Db, taskUuid: string): Promise<TaskTemplate | undefined> {
  const { rows } = await db.query<TaskTemplate>(
    `SELECT nt.named_task_uuid, ns.name AS namespace, nt.name, nt.version,
            nt.configuration -> 'lifecycle' AS lifecycle,
            lifecycle_config_problems(nt.configuration -> 'lifecycle') AS problems
       FROM tasker_tasks t
       JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
       JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
      WHERE t.task_uuid = $1`,
    [taskUuid],
  );
  return rows[0];
}

/** What is wrong with a lifecycle object (lifecycle_config_problems), for one read from a snapshot. */
export async function lifecycleProblems(db: Db, lifecycle: unknown): Promise<string[]> {
  const { rows } = await db.query<{ problems: string[] }>(
    'SELECT lifecycle_config_problems($1::jsonb) AS problems',
    [lifecycle === undefined ? null : JSON.stringify(lifecycle)],
  );
  return rows[0]!.problems;
}
