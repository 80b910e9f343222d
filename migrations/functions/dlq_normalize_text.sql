-- Rules 1-7 of version 1 on one text (see dlq_normalize_error), cut to 200 characters.
CREATE OR REPLACE FUNCTION dlq_normalize_text(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(btrim(regexp_replace(
    -- 7 numbers
    regexp_replace(
    -- 6 durations
    regexp_replace(
    -- 5 hex ids
    regexp_replace(regexp_replace(
    -- 4 IPv4 addresses
    regexp_replace(
    -- 3 timestamps
    regexp_replace(regexp_replace(regexp_replace(
    -- 2 uuids
    regexp_replace(
    -- 1 quoted values
    regexp_replace(regexp_replace(regexp_replace(
      regexp_replace(coalesce(p_text, ''), '\s+', ' ', 'g'),
      '(^|[^[:alnum:]_])''[^'']*''(?=[^[:alnum:]_]|$)', '\1''<str>''', 'g'),
      '(^|[^[:alnum:]_])"[^"]*"(?=[^[:alnum:]_]|$)', '\1"<str>"', 'g'),
      '`[^`]*`', '`<str>`', 'g'),
      '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<uuid>', 'g'),
      '\m\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?(?![[:alnum:]])', '<time>', 'g'),
      '\m\d{1,2}:\d{2}:\d{2}([.,]\d+)?(Z|[+-]\d{2}(:?\d{2})?)?(?![[:alnum:]])', '<time>', 'g'),
      '\m(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} <time>( (GMT|UTC|[+-]\d{4}))?', '<time>', 'g'),
      '\m\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(:\d{1,5})?(?![[:alnum:].])', '<ip>', 'g'),
      '\m0[xX][0-9a-fA-F]+\M', '<hex>', 'g'),
      '\m(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\M', '<hex>', 'g'),
      '\m\d+([.,]\d+)? ?(milliseconds?|millis|ms|microseconds?|us|µs|nanoseconds?|ns|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)(\d+([.,]\d+)?(ms|s|m|h|d))*\M', '<duration>', 'g'),
      '(^|[^[:alnum:]_.])\d+([.,]\d+)*\M', '\1<n>', 'g'),
    '\s+', ' ', 'g')), 200)
$$;
