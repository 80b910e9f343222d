-- Is a column of type p_from stored in a column of type p_to without changing any value?
-- (format_type spellings; conservative: anything not listed is "no")
CREATE OR REPLACE FUNCTION tasker_lifecycle_type_widens(p_from text, p_to text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_numbers text[] := ARRAY['smallint', 'integer', 'bigint', 'numeric'];
  v_from text[];
  v_to text[];
BEGIN
  IF p_from = p_to THEN
    RETURN true;
  END IF;
  -- strings: a longer limit, or none
  IF p_to IN ('text', 'character varying')
     AND (p_from IN ('text', 'character varying') OR p_from ~ '^character varying\(\d+\)$') THEN
    RETURN true;
  END IF;
  v_from := regexp_match(p_from, '^character varying\((\d+)\)$');
  v_to := regexp_match(p_to, '^character varying\((\d+)\)$');
  IF v_from IS NOT NULL AND v_to IS NOT NULL THEN
    RETURN v_to[1]::integer >= v_from[1]::integer;
  END IF;
  -- integers to a wider integer or to numeric; any numeric to unconstrained numeric
  IF p_from = ANY (v_numbers) AND p_to = ANY (v_numbers) THEN
    RETURN array_position(v_numbers, p_to) > array_position(v_numbers, p_from);
  END IF;
  IF p_from ~ '^numeric\(' AND p_to = 'numeric' THEN
    RETURN true;
  END IF;
  IF p_from = 'real' AND p_to = 'double precision' THEN
    RETURN true;
  END IF;
  -- fractional seconds: timestamp(3) with time zone -> timestamp with time zone
  v_from := regexp_match(p_from, '^(timestamp|time)\(\d\)( with(out)? time zone)$');
  IF v_from IS NOT NULL AND p_to = v_from[1] || v_from[2] THEN
    RETURN true;
  END IF;
  RETURN false;
END
$$;
