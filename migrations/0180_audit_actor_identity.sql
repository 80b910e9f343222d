-- 0180: an audit row names who made a change by identity, not only by a name (issue 23).
--
-- Until now a row said only `actor`: a token's name, the CLI's --by name or OS user. A token's name
-- may be given again once its token is revoked, so the changes of a new `updater` token looked the
-- same as those of the revoked one. Now:
--
--   actor_token_id   the token that made the change (API and console): tasker_api_tokens.token_id,
--                    which is never reused. NULL for the CLI.
--   actor_os_user    the operating-system user who ran the CLI, beside the --by name in actor.
--                    NULL for the API and the console.
--
-- Rows written before this migration get their token id where the token is certain: the one
-- token of that name that was live (created, not yet revoked) when the row was written. Only one
-- token of a name is live at a time (idx_api_tokens_live_name), so a row matches one token or, at
-- the edge of a revocation, none; a row that matches none keeps NULL. The audit log holds operator
-- actions (a few per hour), so the backfill reads it once under this migration's lock.
ALTER TABLE tasker_audit_log ADD COLUMN actor_token_id text, ADD COLUMN actor_os_user text;

UPDATE tasker_audit_log a
   SET actor_token_id = m.token_id
  FROM (SELECT a2.audit_id, min(t.token_id) AS token_id
          FROM tasker_audit_log a2
          JOIN tasker_api_tokens t
            ON t.name = a2.actor AND t.created_at <= a2.at AND (t.revoked_at IS NULL OR t.revoked_at > a2.at)
         WHERE a2.actor_kind IN ('token', 'console')
         GROUP BY a2.audit_id
        HAVING count(*) = 1) m
 WHERE a.audit_id = m.audit_id;

-- audit --token-id / GET /v1/audit?actor_token_id=: one token's changes, newest first.
CREATE INDEX idx_audit_log_token_at ON tasker_audit_log (actor_token_id, at DESC, audit_id DESC)
  WHERE actor_token_id IS NOT NULL;
