-- Entries inserted with a fingerprint (a restore from the archive, SQL by hand) count in their
-- groups (dlq_groups_follow_entries). Detection's inserts have none: the function returns at once.
CREATE OR REPLACE TRIGGER dlq_groups_follow_inserts AFTER INSERT ON tasker_tasks_dlq
  REFERENCING NEW TABLE AS dlq_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION dlq_groups_follow_entries();
