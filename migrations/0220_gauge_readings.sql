-- 0220: the DLQ, backlog and failure-group gauges read once per cluster (issue 25).
--
-- Every worker used to run the gauges' reads (pending and overdue investigations, the enrichment
-- backlog, stale tasks waiting, the groups) on every scrape: N workers scraped every 15 s ran N
-- copies of them. Now one worker at a time holds a lease on this row, reads the gauges once per
-- metrics.gauges_interval_seconds (from database.replica_url when set) and stores what it read
-- here; every worker reads this one row each interval and exports the stored values with their
-- age (tasker_metrics_gauges_age_seconds). The lease is the holder's name with an expiry (two
-- intervals), renewed at each of its reads: a holder killed or frozen stops renewing, and the
-- first worker to look after the expiry takes the lease (generation + 1). A holder's store names
-- its generation, so a holder that lost the lease while frozen cannot overwrite its successor's
-- readings. A row, not an advisory lock: through PgBouncer in transaction mode a session lock is
-- not held by anything that outlives the transaction, and a frozen holder's socket keeps one.
CREATE TABLE tasker_gauge_readings (
  id smallint PRIMARY KEY CHECK (id = 1),
  -- The worker holding the lease (its host:pid:instance), null before the first.
  holder text,
  -- +1 each time the lease changes hands.
  generation bigint NOT NULL DEFAULT 0,
  lease_expires_at timestamptz,
  -- When the stored readings were read (the database's clock at the read), and what they are.
  read_at timestamptz,
  readings jsonb,
  CHECK ((holder IS NULL) = (lease_expires_at IS NULL))
);
INSERT INTO tasker_gauge_readings (id) VALUES (1);
