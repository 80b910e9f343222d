-- Keeps tasker_dlq_groups and tasker_dlq_group_hours equal to a count of the entries (issue 27), in
-- the transaction of each change to tasker_tasks_dlq, whatever makes it. Run once per statement by
-- the triggers dlq_groups_follow_inserts, _updates, _deletes (with the statement's rows as the
-- transition tables dlq_new_rows and dlq_old_rows) and _truncates.
--
-- An entry with a fingerprint counts in its group as pending or resolved, in the hour of its
-- dlq_timestamp as opened, and, once resolved, in the hour of its resolution_timestamp as resolved
-- (UTC hours). A statement's change is the sum of its rows' counts after (+1) minus before (-1);
-- a group or an hour whose sum is 0 is not written, so amending notes or metadata, or recording a
-- failed enrichment, writes no group row. A group's row is made by its first entry, from that
-- entry's snapshot.failure_signature (what the group stands for), and never removed: when its entries are archived its counts go to 0, and first_seen_at and last_seen_at
-- keep the span it was seen in. Hour rows that fall to 0 and 0 are removed. TRUNCATE sets every
-- count to 0.
--
-- Each statement changes its groups in fingerprint order, then its hours in (fingerprint, hour)
-- order, so two statements changing the same groups wait for each other in one order and never
-- deadlock. A group's row is held from the end of the statement to its commit: enrichment's
-- batches, resolves and archival batches commit right after their one statement.
--
-- The statement's rows (the transition tables of the operation, TG_OP) are read once, narrow
-- (never their snapshots: an enrichment batch's new snapshots can be megabytes), into arrays;
-- everything after reads the arrays, so every statement here is static and planned once per
-- session (enrichment runs this once per batch of 50: planning it each time cost more than the
-- rest). Only for a group not yet described (its first entries) is one row's snapshot read,
-- found again by its id, for its signature. Reads only the statement's own rows, and the groups'
-- and hours' primary keys. jit is off: with a large statement's rows the planner's costs are high
-- enough to compile expressions, half a second for statements that take milliseconds.
CREATE OR REPLACE FUNCTION dlq_groups_follow_entries() RETURNS trigger
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
  -- The statement's changed rows, narrow: +1 for a row after, -1 for a row before.
  v_sign integer[];
  v_entry uuid[];
  v_fp text[];
  v_pending boolean[];
  v_opened timestamptz[];
  v_resolved timestamptz[];
  v_reason dlq_reason[];
  v_state text[];
  -- The groups not described yet: one row of each (sign and id), and that row's snapshot's parts.
  v_new_fp text[];
  v_new_sign integer[];
  v_new_entry uuid[];
  v_new_sig jsonb[];
  v_new_ns text[];
  v_new_tn text[];
  v_empty_fps text[];
  v_empty_hours timestamptz[];
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE tasker_dlq_groups SET pending = 0, resolved = 0 WHERE pending <> 0 OR resolved <> 0;
    DELETE FROM tasker_dlq_group_hours;
    RETURN NULL;
  ELSIF TG_OP = 'INSERT' THEN
    SELECT array_agg(1), array_agg(n.dlq_entry_uuid), array_agg(n.failure_fingerprint),
           array_agg(n.resolution_status = 'pending'), array_agg(n.dlq_timestamp), array_agg(n.resolution_timestamp),
           array_agg(n.dlq_reason), array_agg(n.original_state::text)
      INTO v_sign, v_entry, v_fp, v_pending, v_opened, v_resolved, v_reason, v_state
      FROM dlq_new_rows n WHERE n.failure_fingerprint IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(-1), array_agg(o.dlq_entry_uuid), array_agg(o.failure_fingerprint),
           array_agg(o.resolution_status = 'pending'), array_agg(o.dlq_timestamp), array_agg(o.resolution_timestamp),
           array_agg(o.dlq_reason), array_agg(o.original_state::text)
      INTO v_sign, v_entry, v_fp, v_pending, v_opened, v_resolved, v_reason, v_state
      FROM dlq_old_rows o WHERE o.failure_fingerprint IS NOT NULL;
  ELSE
    SELECT array_agg(x.sign), array_agg(x.entry), array_agg(x.fp), array_agg(x.pending), array_agg(x.opened),
           array_agg(x.resolved), array_agg(x.reason), array_agg(x.state)
      INTO v_sign, v_entry, v_fp, v_pending, v_opened, v_resolved, v_reason, v_state
      FROM (SELECT 1 AS sign, n.dlq_entry_uuid AS entry, n.failure_fingerprint AS fp,
                   n.resolution_status = 'pending' AS pending, n.dlq_timestamp AS opened,
                   n.resolution_timestamp AS resolved, n.dlq_reason AS reason, n.original_state::text AS state
              FROM dlq_new_rows n WHERE n.failure_fingerprint IS NOT NULL
            UNION ALL
            SELECT -1, o.dlq_entry_uuid, o.failure_fingerprint, o.resolution_status = 'pending', o.dlq_timestamp,
                   o.resolution_timestamp, o.dlq_reason, o.original_state::text
              FROM dlq_old_rows o WHERE o.failure_fingerprint IS NOT NULL) x;
  END IF;
  -- Detection's inserts, and updates of entries in no group, have nothing to count.
  IF v_fp IS NULL THEN
    RETURN NULL;
  END IF;

  -- The groups not described yet among those that change: one row of each, an entry it gains
  -- first; then that row's snapshot, from the transition table it is in.
  SELECT array_agg(p.fp), array_agg(p.sign), array_agg(p.entry)
    INTO v_new_fp, v_new_sign, v_new_entry
    FROM (SELECT DISTINCT ON (c.fp) c.fp, c.sign, c.entry
            FROM unnest(v_fp, v_sign, v_entry, v_pending, v_opened) AS c(fp, sign, entry, pending, opened)
           WHERE c.fp IN (SELECT x.fp
                            FROM unnest(v_fp, v_sign, v_pending) AS x(fp, sign, pending)
                            LEFT JOIN tasker_dlq_groups g ON g.fingerprint = x.fp
                           WHERE g.fingerprint IS NULL OR g.signature = '{}'::jsonb
                           GROUP BY x.fp
                          HAVING sum(x.sign) FILTER (WHERE x.pending) <> 0 OR sum(x.sign) FILTER (WHERE NOT x.pending) <> 0)
           ORDER BY c.fp, c.sign DESC, c.opened, c.entry) p;
  IF v_new_fp IS NOT NULL THEN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
      SELECT array_agg(r.task_snapshot -> 'failure_signature' ORDER BY w.ord),
             array_agg(r.task_snapshot ->> 'namespace' ORDER BY w.ord),
             array_agg(r.task_snapshot ->> 'task_name' ORDER BY w.ord)
        INTO v_new_sig, v_new_ns, v_new_tn
        FROM unnest(v_new_fp, v_new_sign, v_new_entry) WITH ORDINALITY AS w(fp, sign, entry, ord)
        LEFT JOIN dlq_new_rows r ON w.sign = 1 AND r.dlq_entry_uuid = w.entry;
    END IF;
    IF TG_OP = 'DELETE' THEN
      SELECT array_agg(r.task_snapshot -> 'failure_signature' ORDER BY w.ord),
             array_agg(r.task_snapshot ->> 'namespace' ORDER BY w.ord),
             array_agg(r.task_snapshot ->> 'task_name' ORDER BY w.ord)
        INTO v_new_sig, v_new_ns, v_new_tn
        FROM unnest(v_new_fp, v_new_sign, v_new_entry) WITH ORDINALITY AS w(fp, sign, entry, ord)
        LEFT JOIN dlq_old_rows r ON r.dlq_entry_uuid = w.entry;
    ELSIF TG_OP = 'UPDATE' AND -1 = ANY (v_new_sign) THEN
      -- A group that only loses entries here (moved out by hand): its row from before.
      SELECT array_agg(coalesce(w.sig, r.task_snapshot -> 'failure_signature') ORDER BY w.ord),
             array_agg(coalesce(w.ns, r.task_snapshot ->> 'namespace') ORDER BY w.ord),
             array_agg(coalesce(w.tn, r.task_snapshot ->> 'task_name') ORDER BY w.ord)
        INTO v_new_sig, v_new_ns, v_new_tn
        FROM unnest(v_new_sign, v_new_entry, v_new_sig, v_new_ns, v_new_tn) WITH ORDINALITY AS w(sign, entry, sig, ns, tn, ord)
        LEFT JOIN dlq_old_rows r ON w.sign = -1 AND r.dlq_entry_uuid = w.entry;
    END IF;
  END IF;

  INSERT INTO tasker_dlq_groups AS g (fingerprint, rule_version, namespace_name, task_name, template_version,
                                      dlq_reason, original_state, signature, diagnosis, pending, resolved,
                                      first_seen_at, last_seen_at)
  SELECT t.fp, coalesce((d.sig ->> 'version')::integer, 0),
         coalesce(d.sig #>> '{template,namespace}', d.ns), coalesce(d.sig #>> '{template,name}', d.tn),
         d.sig #>> '{template,version}', t.reason, t.state, coalesce(d.sig, '{}'::jsonb),
         coalesce(d.sig ->> 'summary', 'no failure signature recorded'),
         t.d_pending, t.d_resolved, t.first_seen, t.last_seen
    FROM (SELECT c.fp, coalesce(sum(c.sign) FILTER (WHERE c.pending), 0) AS d_pending,
                 coalesce(sum(c.sign) FILTER (WHERE NOT c.pending), 0) AS d_resolved,
                 coalesce(min(c.opened) FILTER (WHERE c.sign > 0), min(c.opened)) AS first_seen,
                 coalesce(max(c.opened) FILTER (WHERE c.sign > 0), max(c.opened)) AS last_seen,
                 min(c.reason) AS reason, min(c.state) AS state
            FROM unnest(v_fp, v_sign, v_pending, v_opened, v_reason, v_state) AS c(fp, sign, pending, opened, reason, state)
           GROUP BY c.fp) t
    LEFT JOIN unnest(v_new_fp, v_new_sig, v_new_ns, v_new_tn) AS d(fp, sig, ns, tn) ON d.fp = t.fp
   WHERE t.d_pending <> 0 OR t.d_resolved <> 0
   ORDER BY t.fp COLLATE "C"
  ON CONFLICT (fingerprint) DO UPDATE
     SET pending = g.pending + EXCLUDED.pending,
         resolved = g.resolved + EXCLUDED.resolved,
         first_seen_at = least(g.first_seen_at, EXCLUDED.first_seen_at),
         last_seen_at = greatest(g.last_seen_at, EXCLUDED.last_seen_at),
         -- A group made from an entry without a recorded signature takes the first one that has it.
         signature = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.signature ELSE g.signature END,
         diagnosis = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.diagnosis ELSE g.diagnosis END,
         rule_version = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.rule_version ELSE g.rule_version END,
         namespace_name = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.namespace_name ELSE g.namespace_name END,
         task_name = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.task_name ELSE g.task_name END,
         template_version = CASE WHEN g.signature = '{}'::jsonb THEN EXCLUDED.template_version ELSE g.template_version END;

  WITH up AS (
    INSERT INTO tasker_dlq_group_hours AS gh (fingerprint, hour, opened, resolved)
    SELECT h.fp, h.hour, sum(h.d_opened), sum(h.d_resolved)
      FROM (SELECT c.fp, date_trunc('hour', c.opened, 'UTC') AS hour, c.sign AS d_opened, 0 AS d_resolved
              FROM unnest(v_fp, v_sign, v_opened) AS c(fp, sign, opened)
            UNION ALL
            SELECT c.fp, date_trunc('hour', c.resolved, 'UTC'), 0, c.sign
              FROM unnest(v_fp, v_sign, v_pending, v_resolved) AS c(fp, sign, pending, resolved)
             WHERE NOT c.pending AND c.resolved IS NOT NULL) h
     GROUP BY h.fp, h.hour
    HAVING sum(h.d_opened) <> 0 OR sum(h.d_resolved) <> 0
     ORDER BY h.fp COLLATE "C", h.hour
    ON CONFLICT (fingerprint, hour) DO UPDATE
       SET opened = gh.opened + EXCLUDED.opened, resolved = gh.resolved + EXCLUDED.resolved
    RETURNING gh.fingerprint, gh.hour, gh.opened, gh.resolved
  )
  SELECT array_agg(up.fingerprint), array_agg(up.hour) INTO v_empty_fps, v_empty_hours
    FROM up WHERE up.opened = 0 AND up.resolved = 0;

  IF v_empty_fps IS NOT NULL THEN
    DELETE FROM tasker_dlq_group_hours gh
     USING unnest(v_empty_fps, v_empty_hours) AS z(fp, hour)
     WHERE gh.fingerprint = z.fp AND gh.hour = z.hour AND gh.opened = 0 AND gh.resolved = 0;
  END IF;
  RETURN NULL;
END
$$;
