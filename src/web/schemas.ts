import { z } from 'zod';
import archiveFinishedTasks, { ArchiveFinishedTasksOptions } from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks, { DetectStaleTasksOptions } from '../../jobs/detect-stale-tasks.ts';
import { MAX_HOLD_DAYS } from '../operations/archive.ts';
import {
  dlqReason,
  finalResolutionStatus,
  groupFingerprint,
  investigationNotes,
  namespaceName,
  personName,
  resolutionStatus,
  rowOffset,
  taskTemplateName,
} from '../validation/fields.ts';
import { oneOf, text, uuid, wholeNumber } from '../validation/values.ts';

/**
 * Request schemas of the API: the value schemas and fields it shares with the CLI
 * (src/validation/) and the jobs' option schemas, so the CLI, the API and the OpenAPI document
 * (/openapi.json) agree. Query values arrive as strings (wholeNumber parses them); objects are
 * strict, so an unknown field is a 400 naming it.
 */

export const limitQuery = (def: number, max = 1000) =>
  wholeNumber(1, max).optional().describe(`rows to return, 1 to ${max} (default ${def})`);

export const DlqListQuery = z.strictObject({
  resolution_status: resolutionStatus.optional().describe('only entries with this status'),
  limit: limitQuery(50),
  offset: rowOffset.optional().describe('rows to skip (default 0)'),
});

export const LimitQuery = (def: number) => z.strictObject({ limit: limitQuery(def) });

export const TaskUuidParams = z.strictObject({ task_uuid: uuid });
export const EntryUuidParams = z.strictObject({ dlq_entry_uuid: uuid });

export const UpdateEntryBody = z.strictObject({
  resolution_status: finalResolutionStatus
    .optional()
    .describe('a final status; only a pending entry can be given one'),
  resolution_notes: investigationNotes.optional(),
  resolved_by: personName
    .optional()
    .describe(
      'whom the resolution is made on behalf of (with resolution_status only); kept as resolved_on_behalf_of. The entry is always recorded as resolved by the token itself.',
    ),
  metadata: z.record(z.string(), z.unknown()).optional().describe('replaces the metadata'),
});

export const RestoreBody = z
  .strictObject({
    hold_days: z
      .int()
      .min(1)
      .max(MAX_HOLD_DAYS)
      .optional()
      .describe('hold the restored task out of archival this many days'),
  })
  .nullish();

export const OpenEntryBody = z.strictObject({
  task_uuid: uuid,
  notes: investigationNotes.describe('why it needs looking at'),
});

export const BulkResolveBody = z.strictObject({
  filter: z
    .strictObject({
      reason: dlqReason.optional(),
      namespace: namespaceName.optional(),
      task_name: taskTemplateName.optional(),
      original_state: text('a task state', 64).optional(),
      older_than_minutes: z
        .int()
        .min(0)
        .max(5_256_000)
        .optional()
        .describe('entered the DLQ more than this long ago'),
      group: groupFingerprint
        .optional()
        .describe(
          "a group's fingerprint (GET /v1/dlq/groups): its pending entries, up to 100,000 in one transaction",
        ),
    })
    .describe('pending entries matching all of these'),
  resolution_status: finalResolutionStatus,
  resolution_notes: investigationNotes,
  dry_run: z
    .boolean()
    .default(true)
    .describe('true (the default): change nothing, report what would be resolved'),
  preview_limit: z.int().min(0).max(1000).default(20).describe('how many of the matching entries to return'),
  expected_fingerprint: z
    .string()
    .regex(/^[0-9a-f]{64}$/, { error: 'expected the fingerprint a dry run returned (64 hex digits)' })
    .optional()
    .describe(
      "the dry run's fingerprint: resolve only if exactly the entries it matched still match (409, nothing changed, otherwise)",
    ),
});

const detectShape = DetectStaleTasksOptions.shape;
/** The options `enqueue detect-stale` takes (its flags), from the job's own schema. */
export const DetectRunOptions = z.strictObject({
  dry_run: detectShape.dry_run.optional(),
  batch_size: detectShape.batch_size.optional(),
  max_batches: detectShape.max_batches.optional(),
});

const archiveShape = ArchiveFinishedTasksOptions.shape;
/** The options `enqueue archive` takes (its flags), from the job's own schema. */
export const ArchiveRunOptions = z.strictObject({
  dry_run: archiveShape.dry_run.optional(),
  retention_days: archiveShape.retention_days.optional(),
  batch_size: archiveShape.batch_size.optional(),
  max_batches: archiveShape.max_batches.optional(),
  batch_target_ms: archiveShape.batch_target_ms.unwrap().optional(),
  duty_cycle_percent: archiveShape.duty_cycle_percent.unwrap().optional(),
  namespace: z.string().min(1).max(64).optional(),
  task_name: z.string().min(1).max(64).optional(),
  finished_before: z.iso.datetime({ offset: true }).optional(),
});

export const RUN_OPTION_SCHEMAS = {
  [detectStaleTasks.name]: DetectRunOptions,
  [archiveFinishedTasks.name]: ArchiveRunOptions,
} as const;

export const JobParams = z.strictObject({
  job: oneOf([detectStaleTasks.name, archiveFinishedTasks.name] as [string, string]),
});
export const EnqueueBody = z.strictObject({
  this_run_only: z
    .boolean()
    .default(false)
    .describe(
      'true: a run that reaches max_batches with work left stops there; false (the default): it hands the rest on to a new run, so the job carries on until its work is done',
    ),
  options: z
    .record(z.string(), z.unknown())
    .default({})
    .describe(
      `the run's options: for ${detectStaleTasks.name} ${Object.keys(DetectRunOptions.shape).join(', ')}; for ${archiveFinishedTasks.name} ${Object.keys(ArchiveRunOptions.shape).join(', ')}`,
    ),
});
export const JobRunParams = JobParams.extend({ id: uuid });
export const DeadJobParams = JobParams.extend({ id: uuid });

const isoTime = z.iso.datetime({
  offset: true,
  error: 'expected an ISO 8601 time with a zone, such as 2026-05-01T00:00:00Z',
});

export const AuditQuery = z.strictObject({
  since: isoTime.optional().describe('only rows at or after this time'),
  actor: text('an actor name', 255).optional().describe('only rows by this actor (a name)'),
  actor_token_id: z
    .string()
    .regex(/^[0-9a-f]{16}$/, { error: 'expected a token id (16 hex digits, as `token list` shows)' })
    .optional()
    .describe('only rows by this token: a name given again after a revocation is another token'),
  target_id: text('an entry, task, job or token id', 255).optional(),
  before_id: wholeNumber(1, Number.MAX_SAFE_INTEGER)
    .optional()
    .describe('rows older than this audit_id (paging)'),
  limit: limitQuery(100),
});

export const ErrorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
