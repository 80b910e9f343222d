-- updated_at of a DLQ entry follows every change, through the engine's update_updated_at_column()
-- (as upstream's tables do).
CREATE OR REPLACE TRIGGER update_dlq_updated_at BEFORE UPDATE ON tasker_tasks_dlq
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
