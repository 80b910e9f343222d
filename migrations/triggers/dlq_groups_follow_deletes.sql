-- Entries archived (archival moves resolved ones) or deleted leave their groups' counts
-- (dlq_groups_follow_entries).
CREATE OR REPLACE TRIGGER dlq_groups_follow_deletes AFTER DELETE ON tasker_tasks_dlq
  REFERENCING OLD TABLE AS dlq_old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION dlq_groups_follow_entries();
