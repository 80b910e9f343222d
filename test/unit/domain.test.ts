/**
 * Domain rules: upstream's model and lifecycle unit tests (upstream-facts.md §6 "Unit", tests 13-14),
 * in TypeScript.
 */
import { describe, expect, it } from '@jest/globals';
import {
  DLQ_REASONS,
  isOverdue,
  isSystemicReason,
  minutesInDlq,
  REASON_PRIORITY_SCORE,
  reasonRank,
} from '../../src/domain/dlq.ts';
import { LifecycleConfigSchema, lifecycleProblems } from '../../src/domain/lifecycle.ts';
import { dlqCreated, isFailure, parseActionTaken, transitionSucceeded } from '../../src/domain/staleness.ts';

const T0 = new Date('2026-06-01T00:00:00Z');
const hours = (h: number) => new Date(T0.getTime() + h * 3_600_000);

describe('DLQ reasons', () => {
  it('rank 1 to 5 in the order of their queue score', () => {
    expect(DLQ_REASONS.map((r) => [r, reasonRank(r)])).toEqual([
      ['staleness_timeout', 3],
      ['max_retries_exceeded', 2],
      ['dependency_cycle_detected', 1],
      ['worker_unavailable', 4],
      ['manual_dlq', 5],
    ]);
    const byScore = [...DLQ_REASONS].sort((a, b) => REASON_PRIORITY_SCORE[b] - REASON_PRIORITY_SCORE[a]);
    expect(byScore.map(reasonRank)).toEqual([1, 2, 3, 4, 5]);
  });

  it('systemic: cycle, retries, worker', () => {
    expect(DLQ_REASONS.filter(isSystemicReason)).toEqual([
      'max_retries_exceeded',
      'dependency_cycle_detected',
      'worker_unavailable',
    ]);
  });
});

describe('DLQ entry age', () => {
  it('minutes in the DLQ, until now or until resolved', () => {
    expect(minutesInDlq({ dlq_timestamp: T0, resolution_timestamp: null }, hours(2))).toBe(120);
    expect(minutesInDlq({ dlq_timestamp: T0, resolution_timestamp: hours(1) }, hours(5))).toBe(60);
  });

  it('overdue strictly after max_pending_age_hours; exactly 168 h is not; resolved never', () => {
    expect(isOverdue({ dlq_timestamp: T0, resolution_status: 'pending' }, 168, hours(168))).toBe(false);
    expect(
      isOverdue({ dlq_timestamp: T0, resolution_status: 'pending' }, 168, new Date(hours(168).getTime() + 1)),
    ).toBe(true);
    expect(isOverdue({ dlq_timestamp: T0, resolution_status: 'manually_resolved' }, 168, hours(1000))).toBe(
      false,
    );
  });
});

describe('action_taken (StalenessAction)', () => {
  it('13. parses the five values; anything else is transition_failed', () => {
    for (const v of [
      'would_transition_to_dlq_and_error',
      'transitioned_to_dlq_and_error',
      'moved_to_dlq_only',
      'transitioned_to_error_only',
    ]) {
      expect(parseActionTaken(v)).toBe(v);
    }
    expect(parseActionTaken('TransitionedToDlqAndError')).toBe('transition_failed');
    expect(parseActionTaken('')).toBe('transition_failed');
  });

  it('14. helpers: dlq created, transition succeeded, failure (against the plan)', () => {
    expect(dlqCreated('transitioned_to_dlq_and_error')).toBe(true);
    expect(dlqCreated('moved_to_dlq_only')).toBe(true);
    expect(dlqCreated('transitioned_to_error_only')).toBe(false);
    expect(transitionSucceeded('transitioned_to_error_only')).toBe(true);
    expect(transitionSucceeded('moved_to_dlq_only')).toBe(false);
    expect(isFailure('transition_failed')).toBe(true);
    expect(isFailure('moved_to_dlq_only')).toBe(false); // upstream counted it a failure; here only against a plan
    expect(isFailure('moved_to_dlq_only', 'dlq_and_error')).toBe(true);
    expect(isFailure('moved_to_dlq_only', 'dlq_only')).toBe(false);
    expect(isFailure('transitioned_to_error_only', 'dlq_and_error')).toBe(true);
    expect(isFailure('transitioned_to_error_only', 'error_only')).toBe(false);
    expect(isFailure('transitioned_to_dlq_and_error', 'dlq_and_error')).toBe(false);
  });
});

describe('template lifecycle config', () => {
  it('absent or {}: every key unset, staleness_action dlq', () => {
    expect(LifecycleConfigSchema.parse({})).toEqual({ staleness_action: 'dlq' });
  });

  it('a full section', () => {
    const full = {
      max_duration_minutes: 30,
      max_waiting_for_dependencies_minutes: 2,
      max_waiting_for_retry_minutes: 2,
      max_steps_in_process_minutes: 2,
      staleness_action: 'error',
      auto_fail_on_timeout: true,
      auto_dlq_on_timeout: false,
    } as const;
    expect(LifecycleConfigSchema.parse(full)).toEqual(full);
  });

  it('a partial section keeps what is given', () => {
    expect(LifecycleConfigSchema.parse({ max_waiting_for_retry_minutes: 10 })).toEqual({
      max_waiting_for_retry_minutes: 10,
      staleness_action: 'dlq',
    });
  });

  it('round-trips through JSON', () => {
    const value = LifecycleConfigSchema.parse({ max_duration_minutes: 90, staleness_action: 'none' });
    expect(LifecycleConfigSchema.parse(JSON.parse(JSON.stringify(value)))).toEqual(value);
  });

  it('names what is wrong, key by key', () => {
    expect(lifecycleProblems(undefined)).toEqual([]);
    expect(lifecycleProblems({ max_duration_minutes: 5 })).toEqual([]);
    expect(lifecycleProblems('fast')).toEqual(['lifecycle must be an object, got "fast"']);
    expect(
      lifecycleProblems({
        max_duration_minutes: -1,
        staleness_action: 'dlqq',
        auto_dlq_on_timeout: 1,
        colour: 'red',
      }),
    ).toEqual([
      'auto_dlq_on_timeout must be true or false, got 1',
      'unknown key colour',
      'max_duration_minutes must be a positive whole number of minutes, got -1',
      'staleness_action must be one of "dlq", "error", "none", got "dlqq"',
    ]);
  });
});
