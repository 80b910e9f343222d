-- A step's error as it goes into a failure fingerprint: the parts that differ between occurrences
-- of the same failure masked, so that "card declined for order 4411" and "card declined for order
-- 9120" read alike. p_rules is the rule set's version (dlq_failure_signature passes the current
-- one); a version this build does not know is refused, so a fingerprint is never computed by rules
-- other than the ones it says. docs/grouping.md lists the rules; each has its test in
-- test/integration/dlq-groups.test.ts.
--
-- The error (dlq_step_error: a step's results -> 'error'):
--   a string        its text;
--   an object       "<type>: <message>": the type (error_type, type, class or name; kept as it is,
--                   at most 64 characters) and the message (message, msg, detail or description);
--                   without a message, its other members as "key: value" in key order, each value
--                   masked;
--   anything else   its JSON text.
-- Rules of version 1, in this order, on the message (whitespace runs become one space first):
--   1 quoted values   '...', "..." and `...` (a quote at a word's edge, not an apostrophe) -> '<str>' "<str>" `<str>`
--   2 uuids           8-4-4-4-12 hex digits                                   -> <uuid>
--   3 timestamps      ISO 8601 dates and times (2026-06-01, 2026-06-01T12:00:00.123Z,
--                     2026-06-01 12:00:00+02), times of day (12:00:00), HTTP dates
--                     (Mon, 01 Jun 2026 12:00:00 GMT)                         -> <time>
--   4 IPv4 addresses  with or without a port                                  -> <ip>
--   5 hex ids         0x followed by hex digits; a word of 8 or more hex digits with both a digit
--                     and a letter                                           -> <hex>
--   6 durations       a number and a unit (ms, s, sec, seconds, m, min, minutes, h, hours, d, days,
--                     us, ns), also compound (1h30m)                          -> <duration>
--   7 numbers         a number that starts a word (so order-4411 and 4411 are masked, step2 and
--                     v2.1 are not), with its decimals; a sign stays (-5 -> -<n>) -> <n>
-- then the text is cut to 200 characters. NULL (no error) stays NULL.
CREATE OR REPLACE FUNCTION dlq_normalize_error(p_error jsonb, p_rules integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v_type text;
  v_message text;
BEGIN
  IF p_rules IS DISTINCT FROM 1 THEN
    RAISE EXCEPTION 'dlq_normalize_error: no rule set version % (this build has version 1, dlq_failure_rules_version())', p_rules
      USING ERRCODE = '22023';
  END IF;
  IF p_error IS NULL OR jsonb_typeof(p_error) = 'null' THEN
    RETURN NULL;
  END IF;
  IF jsonb_typeof(p_error) = 'object' THEN
    v_type := left(coalesce(p_error ->> 'error_type', p_error ->> 'type', p_error ->> 'class', p_error ->> 'name'), 64);
    v_message := coalesce(p_error ->> 'message', p_error ->> 'msg', p_error ->> 'detail', p_error ->> 'description');
    IF v_message IS NULL THEN
      SELECT string_agg(e.key || ': ' || dlq_normalize_text(CASE jsonb_typeof(e.value)
                                                               WHEN 'string' THEN e.value #>> '{}'
                                                               ELSE e.value::text END),
                        ', ' ORDER BY e.key COLLATE "C")
        INTO v_message
        FROM jsonb_each(p_error - ARRAY['error_type', 'type', 'class', 'name']) e;
      RETURN left(concat_ws(': ', v_type, v_message), 264);
    END IF;
  ELSIF jsonb_typeof(p_error) = 'string' THEN
    v_message := p_error #>> '{}';
  ELSE
    v_message := p_error::text;
  END IF;
  RETURN concat_ws(': ', v_type, dlq_normalize_text(v_message));
END
$$;
