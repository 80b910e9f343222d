-- An entry that gets its fingerprint (enrichment, the backfill), is resolved (one, many, PATCH) or
-- moves to another group moves its counts (dlq_groups_follow_entries).
CREATE OR REPLACE TRIGGER dlq_groups_follow_updates AFTER UPDATE ON tasker_tasks_dlq
  REFERENCING OLD TABLE AS dlq_old_rows NEW TABLE AS dlq_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION dlq_groups_follow_entries();
