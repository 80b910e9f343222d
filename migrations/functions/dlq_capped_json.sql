-- p_value itself when its JSON text fits in p_max_bytes, else a marker
-- {"truncated": true, "original_bytes": N, "preview": "<the first characters of its JSON text>"}
-- whose own JSON text fits in p_max_bytes (the preview shrinks until it does).
CREATE OR REPLACE FUNCTION dlq_capped_json(p_value jsonb, p_max_bytes integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v_text text;
  v_bytes integer;
  v_keep integer;
  v_marker jsonb;
BEGIN
  IF p_value IS NULL THEN
    RETURN NULL;
  END IF;
  v_text := p_value::text;
  v_bytes := octet_length(v_text);
  IF v_bytes <= p_max_bytes THEN
    RETURN p_value;
  END IF;
  v_keep := p_max_bytes;
  LOOP
    v_marker := jsonb_build_object('truncated', true, 'original_bytes', v_bytes, 'preview', left(v_text, v_keep));
    EXIT WHEN v_keep = 0 OR octet_length(v_marker::text) <= p_max_bytes;
    -- Shrink in proportion to the overshoot (escaping and multi-byte characters make the marker
    -- bigger than the characters kept), and always by at least one character.
    v_keep := greatest(0, least(v_keep - 1,
      (v_keep::bigint * (p_max_bytes - 64) / octet_length(v_marker::text))::integer));
  END LOOP;
  RETURN v_marker;
END
$$;
