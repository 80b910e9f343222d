import { z } from 'zod';
import { DLQ_REASONS, DLQ_RESOLUTION_STATUSES, TERMINAL_RESOLUTION_STATUSES } from '../domain/dlq.ts';
import { FINGERPRINT_PATTERN, GROUP_ENTRY_STATUSES } from '../domain/dlq-groups.ts';
import { oneOf, text, wholeNumber } from './values.ts';

/**
 * The fields an operator gives both on the command line and to the API, defined once: `dlq resolve
 * --status` and PATCH /v1/dlq/entry's resolution_status, `--notes` and resolution_notes, `--by`
 * and resolved_by, and so on. A value one surface accepts the other accepts, refused with the same
 * words. (Fields only one surface takes stay with it: src/cli/commands/*, src/web/schemas.ts.)
 */

/** Any status of an investigation (list filters). */
export const resolutionStatus = oneOf(DLQ_RESOLUTION_STATUSES);

/** A status that ends an investigation (resolving). */
export const finalResolutionStatus = oneOf(TERMINAL_RESOLUTION_STATUSES);

/** Why a task's entry was opened. */
export const dlqReason = oneOf(DLQ_REASONS);

/** What an investigator found and did, or why an entry needs looking at. */
export const investigationNotes = text('notes', 10_000, { multiline: true });

/** Who did something, as resolved_by and the audit log record it. */
export const personName = text('a name', 255);

/** Task template filters (archival, bulk resolution). */
export const namespaceName = text('a namespace name', 64);
export const taskTemplateName = text('a task template name', 64);

/** Rows to skip when paging a list. */
export const rowOffset = wholeNumber(0, 1_000_000);

/** A group of investigations: its failure fingerprint (issue 27). */
export const groupFingerprint = z.string().trim().toLowerCase().regex(FINGERPRINT_PATTERN, {
  error: "expected a group's fingerprint: 32 hex digits, such as 3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6",
});

/** Which of a group's entries to list. */
export const groupEntryStatus = oneOf(GROUP_ENTRY_STATUSES);
