-- TRUNCATE leaves no entry: every group's counts go to 0 (dlq_groups_follow_entries).
CREATE OR REPLACE TRIGGER dlq_groups_follow_truncates AFTER TRUNCATE ON tasker_tasks_dlq
  FOR EACH STATEMENT EXECUTE FUNCTION dlq_groups_follow_entries();
