-- The version of the rule set failure fingerprints are made with (dlq_normalize_error's rules;
-- dlq_failure_signature writes it into every signature, and groups keep it). A new rule set raises
-- it; the enrichment sweep then moves the pending entries of groups made by an older version into
-- the groups the new rules give them (docs/grouping.md).
CREATE OR REPLACE FUNCTION dlq_failure_rules_version() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 1
$$;
