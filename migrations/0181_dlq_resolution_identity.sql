-- 0181: who resolved an investigation is who was signed in, not what the caller wrote (issue 23).
--
-- Upstream's PATCH takes `resolved_by` as free text, and the entry showed it as "Resolved by": any
-- token with dlq:update could resolve an entry as someone else. Now resolved_by is always the
-- identity that made the change (the token's name through the API and the console; the --by name
-- or OS user through the CLI), and:
--
--   resolved_by_token_id   the token that resolved it (API and console), so a name given again
--                          after a revocation cannot be mistaken for the earlier token. NULL for
--                          the CLI and for entries resolved before this migration.
--   resolved_on_behalf_of  what the caller gave as resolved_by, kept apart and shown as "on behalf
--                          of"; NULL when it gave none.
--
-- Entries resolved before this migration keep resolved_by as it was written (the audit log has
-- the token that wrote it). The archive table gets the columns from sync_archive_tables (run by
-- migrate), like any column the live table gains. Adding nullable columns without a default
-- rewrites nothing.
ALTER TABLE tasker_tasks_dlq
  ADD COLUMN resolved_by_token_id text,
  ADD COLUMN resolved_on_behalf_of varchar(255);
