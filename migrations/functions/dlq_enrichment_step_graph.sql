-- The steps of one task with what the diagnosis needs to know of its graph, in time linear in the
-- graph's size (steps + edges), whatever its shape. One row per step:
--   the step's own fields (name, current state and since when, attempts, ...), done (complete or
--   resolved_manually), out_edges (edges leaving it);
--   on_cycle      reachable from itself along the edges: a self-loop, or a strongly connected
--                 component of two or more steps (Tarjan's algorithm);
--   blocking      not done, and on a cycle or without an unfinished predecessor;
-- and for the first p_max_items blocking steps in (since, id) order (those the diagnosis lists;
-- NULL for the others): the names of their unfinished predecessors (waits_on) and successors
-- (blocks), at most p_max_names each in name order, with their totals (an edge given twice counts
-- twice), and downstream_unfinished, the unfinished steps reachable from it other than itself (one
-- breadth-first walk each: p_max_items x (steps + edges) at most).
--
-- Why not SQL: the diagnosis used to take the transitive closure of the edges with a recursive CTE
-- (every pair of steps connected by a path: steps x reachable steps rows, each iteration joining
-- the whole edge set again), which took about a minute for a 1,000-step chain and never finished a
-- 5,000-step one. Here the graph is read in one statement and walked in arrays, as in
-- task_has_dependency_cycle (migration 0110): the task's steps (idx_workflow_steps_task_uuid,
-- idx_step_transitions_uuid_most_recent, tasker_named_steps_pkey) and the edges leaving them
-- (idx_step_edges_from_step_uuid, one probe per step); each step and edge end is numbered by
-- dense_rank() over its uuid (a sort, never a join between two sets, so no plan can turn it
-- quadratic), and the adjacency lists are built by a counting sort. An edge to a step of another
-- task (the foreign key allows it) leads nowhere further and counts for no list, as before.
--
-- plan_cache_mode = force_generic_plan: the graph is read by one statement whose generic plan
-- (index scans by task, one edge probe per step) suits every task; left to choose, PL/pgSQL kept
-- re-planning it for each task's uuid (7 ms the first time, about 0.3 ms each after), which on a
-- 5-step task cost twice what all the rest did (a sweep's 1,000 small tasks: 0.5 s, generic 0.15 s).
CREATE OR REPLACE FUNCTION dlq_enrichment_step_graph(
  p_task_uuid uuid,
  p_max_items integer,
  p_max_names integer
) RETURNS TABLE (
  id uuid,
  name text,
  state text,
  since timestamptz,
  attempts integer,
  max_attempts integer,
  retryable boolean,
  last_attempted_at timestamptz,
  done boolean,
  out_edges integer,
  on_cycle boolean,
  blocking boolean,
  waits_on jsonb,
  waits_on_total integer,
  blocks jsonb,
  blocks_total integer,
  downstream_unfinished integer
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
  -- Nodes 1..n: the task's steps and the far ends of edges leaving them, numbered by uuid.
  v_id uuid[];
  v_name text[];
  v_state text[];
  v_since timestamptz[];
  v_attempts integer[];
  v_max_attempts integer[];
  v_retryable boolean[];
  v_last_attempted timestamptz[];
  v_is_step boolean[];      -- false: a step of another task, reached by an edge
  v_done boolean[];
  v_order integer[];        -- the steps' node numbers in (since, id) order
  v_from integer[];         -- edge i goes from node v_from[i] ...
  v_to integer[];           -- ... to node v_to[i]
  n integer;
  m integer;
  -- Adjacency: node v's successors are v_out[v_out_start[v] .. v_out_start[v + 1] - 1], its
  -- predecessors v_in[v_in_start[v] .. v_in_start[v + 1] - 1].
  v_out_start integer[];
  v_out integer[];
  v_in_start integer[];
  v_in integer[];
  v_fill integer[];
  v_out_edges integer[];
  -- Tarjan: visit order, lowest order reachable, the component stack, the call stack.
  v_index integer[];
  v_low integer[];
  v_on_stack boolean[];
  v_stack integer[];
  v_sp integer := 0;
  v_calls integer[];
  v_cp integer := 0;
  v_next integer[];
  v_counter integer := 0;
  v_size integer;
  v_cycle boolean[];
  v_unfinished_preds integer[];
  v_blocking boolean[];
  -- The lists, for the first p_max_items blocking steps.
  v_waits jsonb[];
  v_waits_total integer[];
  v_blocks jsonb[];
  v_blocks_total integer[];
  v_down integer[];
  v_names text[];
  v_count integer;
  v_seen integer[];         -- the walk that last reached each node
  v_queue integer[];
  v_head integer;
  v_tail integer;
  v_listed integer := 0;
  v integer;
  w integer;
  u integer;
  i integer;
  j integer;
BEGIN
  WITH s AS MATERIALIZED (
    SELECT s.workflow_step_uuid AS id, ns.name::text AS name,
           coalesce(st.to_state, 'pending')::text AS state,
           coalesce(st.created_at, s.created_at) AS since,
           coalesce(s.attempts, 0) AS attempts, s.max_attempts, s.retryable, s.last_attempted_at
      FROM tasker_workflow_steps s
      JOIN tasker_named_steps ns ON ns.named_step_uuid = s.named_step_uuid
      LEFT JOIN tasker_workflow_step_transitions st
        ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent = true
     WHERE s.task_uuid = p_task_uuid
  ),
  e AS MATERIALIZED (
    SELECT row_number() OVER () AS i, x.from_step_uuid AS f, x.to_step_uuid AS t
      FROM s JOIN tasker_workflow_step_edges x ON x.from_step_uuid = s.id
  ),
  ends AS MATERIALIZED (
    SELECT (dense_rank() OVER (ORDER BY r.id))::integer AS k, r.*
      FROM (SELECT s.id, 0 AS side, NULL::bigint AS i, s.name, s.state, s.since, s.attempts, s.max_attempts,
                   s.retryable, s.last_attempted_at
              FROM s
            UNION ALL
            SELECT e.f, 1, e.i, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM e
            UNION ALL
            SELECT e.t, 2, e.i, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM e) r
  ),
  nodes AS MATERIALIZED (
    SELECT DISTINCT ON (k) * FROM ends ORDER BY k, side
  )
  SELECT array_agg(nd.id ORDER BY nd.k), array_agg(nd.name ORDER BY nd.k), array_agg(nd.state ORDER BY nd.k),
         array_agg(nd.since ORDER BY nd.k), array_agg(nd.attempts ORDER BY nd.k),
         array_agg(nd.max_attempts ORDER BY nd.k), array_agg(nd.retryable ORDER BY nd.k),
         array_agg(nd.last_attempted_at ORDER BY nd.k), array_agg(nd.side = 0 ORDER BY nd.k),
         array_agg(nd.side = 0 AND nd.state IN ('complete', 'resolved_manually') ORDER BY nd.k),
         (SELECT array_agg(x.k ORDER BY x.since, x.id) FROM ends x WHERE x.side = 0),
         (SELECT coalesce(array_agg(x.k ORDER BY x.i), '{}') FROM ends x WHERE x.side = 1),
         (SELECT coalesce(array_agg(x.k ORDER BY x.i), '{}') FROM ends x WHERE x.side = 2)
    INTO v_id, v_name, v_state, v_since, v_attempts, v_max_attempts, v_retryable, v_last_attempted,
         v_is_step, v_done, v_order, v_from, v_to
    FROM nodes nd;

  n := coalesce(array_length(v_id, 1), 0);
  IF n = 0 THEN
    RETURN;
  END IF;
  m := coalesce(array_length(v_from, 1), 0);

  -- Counting sort of the edges by source (successors) and by target (predecessors).
  v_out_start := array_fill(0, ARRAY[n + 1]);
  v_in_start := array_fill(0, ARRAY[n + 1]);
  FOR i IN 1..m LOOP
    v_out_start[v_from[i] + 1] := v_out_start[v_from[i] + 1] + 1;
    v_in_start[v_to[i] + 1] := v_in_start[v_to[i] + 1] + 1;
  END LOOP;
  v_out_start[1] := 1;
  v_in_start[1] := 1;
  FOR i IN 2..n + 1 LOOP
    v_out_start[i] := v_out_start[i] + v_out_start[i - 1];
    v_in_start[i] := v_in_start[i] + v_in_start[i - 1];
  END LOOP;
  v_out := array_fill(0, ARRAY[m]);
  v_in := array_fill(0, ARRAY[m]);
  v_fill := v_out_start;
  FOR i IN 1..m LOOP
    v_out[v_fill[v_from[i]]] := v_to[i];
    v_fill[v_from[i]] := v_fill[v_from[i]] + 1;
  END LOOP;
  v_fill := v_in_start;
  FOR i IN 1..m LOOP
    v_in[v_fill[v_to[i]]] := v_from[i];
    v_fill[v_to[i]] := v_fill[v_to[i]] + 1;
  END LOOP;
  v_out_edges := array_fill(0, ARRAY[n]);
  FOR v IN 1..n LOOP
    v_out_edges[v] := v_out_start[v + 1] - v_out_start[v];
  END LOOP;

  -- On a cycle: a self-loop, or a strongly connected component of two or more nodes (Tarjan,
  -- with explicit stacks so a long chain cannot exhaust the server's stack).
  v_cycle := array_fill(false, ARRAY[n]);
  FOR i IN 1..m LOOP
    IF v_from[i] = v_to[i] THEN
      v_cycle[v_from[i]] := true;
    END IF;
  END LOOP;
  v_index := array_fill(0, ARRAY[n]);
  v_low := array_fill(0, ARRAY[n]);
  v_on_stack := array_fill(false, ARRAY[n]);
  v_stack := array_fill(0, ARRAY[n]);
  v_calls := array_fill(0, ARRAY[n]);
  v_next := array_fill(0, ARRAY[n]);
  FOR root IN 1..n LOOP
    CONTINUE WHEN v_index[root] > 0;
    v_counter := v_counter + 1;
    v_index[root] := v_counter;
    v_low[root] := v_counter;
    v_sp := v_sp + 1;
    v_stack[v_sp] := root;
    v_on_stack[root] := true;
    v_next[root] := v_out_start[root];
    v_cp := 1;
    v_calls[1] := root;
    WHILE v_cp > 0 LOOP
      v := v_calls[v_cp];
      IF v_next[v] < v_out_start[v + 1] THEN
        w := v_out[v_next[v]];
        v_next[v] := v_next[v] + 1;
        IF v_index[w] = 0 THEN
          v_counter := v_counter + 1;
          v_index[w] := v_counter;
          v_low[w] := v_counter;
          v_sp := v_sp + 1;
          v_stack[v_sp] := w;
          v_on_stack[w] := true;
          v_next[w] := v_out_start[w];
          v_cp := v_cp + 1;
          v_calls[v_cp] := w;
        ELSIF v_on_stack[w] AND v_index[w] < v_low[v] THEN
          v_low[v] := v_index[w];
        END IF;
      ELSE
        v_cp := v_cp - 1;
        IF v_low[v] = v_index[v] THEN
          v_size := 0;
          LOOP
            w := v_stack[v_sp];
            v_sp := v_sp - 1;
            v_on_stack[w] := false;
            v_size := v_size + 1;
            EXIT WHEN w = v;
          END LOOP;
          IF v_size > 1 THEN
            FOR j IN v_sp + 1..v_sp + v_size LOOP
              v_cycle[v_stack[j]] := true;
            END LOOP;
          END IF;
        END IF;
        IF v_cp > 0 THEN
          u := v_calls[v_cp];
          IF v_low[v] < v_low[u] THEN
            v_low[u] := v_low[v];
          END IF;
        END IF;
      END IF;
    END LOOP;
  END LOOP;

  -- Blocking: not done, and on a cycle or with no unfinished predecessor.
  v_unfinished_preds := array_fill(0, ARRAY[n]);
  FOR i IN 1..m LOOP
    IF NOT v_done[v_from[i]] THEN
      v_unfinished_preds[v_to[i]] := v_unfinished_preds[v_to[i]] + 1;
    END IF;
  END LOOP;
  v_blocking := array_fill(false, ARRAY[n]);
  FOR v IN 1..n LOOP
    v_blocking[v] := v_is_step[v] AND NOT v_done[v] AND (v_cycle[v] OR v_unfinished_preds[v] = 0);
  END LOOP;

  -- The lists of the blocking steps the diagnosis shows.
  v_waits := array_fill(NULL::jsonb, ARRAY[n]);
  v_waits_total := array_fill(NULL::integer, ARRAY[n]);
  v_blocks := array_fill(NULL::jsonb, ARRAY[n]);
  v_blocks_total := array_fill(NULL::integer, ARRAY[n]);
  v_down := array_fill(NULL::integer, ARRAY[n]);
  v_seen := array_fill(0, ARRAY[n]);
  v_queue := array_fill(0, ARRAY[n]);
  FOREACH v IN ARRAY v_order LOOP
    EXIT WHEN v_listed >= p_max_items;
    CONTINUE WHEN NOT v_blocking[v];
    v_listed := v_listed + 1;

    v_names := '{}';
    v_count := 0;
    FOR i IN v_in_start[v]..v_in_start[v + 1] - 1 LOOP
      u := v_in[i];
      IF NOT v_done[u] THEN
        v_count := v_count + 1;
        -- Keep the p_max_names smallest names, in order (an insertion into a short sorted array).
        IF v_count <= p_max_names OR v_name[u] < v_names[p_max_names] THEN
          j := 1;
          WHILE j <= coalesce(array_length(v_names, 1), 0) AND v_names[j] <= v_name[u] LOOP
            j := j + 1;
          END LOOP;
          v_names := (v_names[1:j - 1] || v_name[u] || v_names[j:])[1:p_max_names];
        END IF;
      END IF;
    END LOOP;
    v_waits_total[v] := v_count;
    v_waits[v] := to_jsonb(v_names);

    v_names := '{}';
    v_count := 0;
    FOR i IN v_out_start[v]..v_out_start[v + 1] - 1 LOOP
      w := v_out[i];
      IF v_is_step[w] AND NOT v_done[w] THEN
        v_count := v_count + 1;
        -- Keep the p_max_names smallest names, in order (an insertion into a short sorted array).
        IF v_count <= p_max_names OR v_name[w] < v_names[p_max_names] THEN
          j := 1;
          WHILE j <= coalesce(array_length(v_names, 1), 0) AND v_names[j] <= v_name[w] LOOP
            j := j + 1;
          END LOOP;
          v_names := (v_names[1:j - 1] || v_name[w] || v_names[j:])[1:p_max_names];
        END IF;
      END IF;
    END LOOP;
    v_blocks_total[v] := v_count;
    v_blocks[v] := to_jsonb(v_names);

    -- Breadth-first from v; v itself is marked first, so a cycle back to it does not count it.
    v_seen[v] := v_listed;
    v_queue[1] := v;
    v_head := 1;
    v_tail := 1;
    v_down[v] := 0;
    WHILE v_head <= v_tail LOOP
      u := v_queue[v_head];
      v_head := v_head + 1;
      FOR i IN v_out_start[u]..v_out_start[u + 1] - 1 LOOP
        w := v_out[i];
        IF v_seen[w] <> v_listed THEN
          v_seen[w] := v_listed;
          v_tail := v_tail + 1;
          v_queue[v_tail] := w;
          IF v_is_step[w] AND NOT v_done[w] THEN
            v_down[v] := v_down[v] + 1;
          END IF;
        END IF;
      END LOOP;
    END LOOP;
  END LOOP;

  RETURN QUERY
  SELECT g.id, g.name, g.state, g.since, g.attempts, g.max_attempts, g.retryable, g.last_attempted_at, g.done,
         g.out_edges, g.on_cycle, g.blocking, g.waits_on, g.waits_on_total, g.blocks, g.blocks_total,
         g.downstream_unfinished
    FROM unnest(v_id, v_name, v_state, v_since, v_attempts, v_max_attempts, v_retryable, v_last_attempted,
                v_done, v_out_edges, v_cycle, v_blocking, v_waits, v_waits_total, v_blocks, v_blocks_total,
                v_down, v_is_step)
         AS g(id, name, state, since, attempts, max_attempts, retryable, last_attempted_at, done, out_edges,
              on_cycle, blocking, waits_on, waits_on_total, blocks, blocks_total, downstream_unfinished, is_step)
   WHERE g.is_step;
END
$$;
