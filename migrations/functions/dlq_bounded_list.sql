-- A list cut to its first items: how many there are, which are shown, and how many were left out.
CREATE OR REPLACE FUNCTION dlq_bounded_list(p_items jsonb, p_total bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object(
    'total', p_total,
    'items', coalesce(p_items, '[]'::jsonb),
    'truncated', p_total > jsonb_array_length(coalesce(p_items, '[]'::jsonb)),
    'omitted', p_total - jsonb_array_length(coalesce(p_items, '[]'::jsonb)))
$$;
