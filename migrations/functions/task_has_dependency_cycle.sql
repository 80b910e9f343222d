-- Whether the edges leaving a task's steps form a cycle: Kahn's algorithm (repeatedly remove nodes
-- nobody points to; a cycle is what can never be removed). One read of the task's edges
-- (idx_workflow_steps_task_uuid, idx_step_edges_from_step_uuid), then O(steps + edges) in memory.
CREATE OR REPLACE FUNCTION task_has_dependency_cycle(p_task_uuid uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_from integer[];   -- edge i goes from node v_from[i] ...
  v_to integer[];     -- ... to node v_to[i]; nodes are numbered 1..v_nodes
  v_nodes integer;
  v_edges integer;
  v_start integer[];  -- node v's targets are v_adj[v_start[v] .. v_start[v + 1] - 1]
  v_fill integer[];
  v_adj integer[];
  v_indeg integer[];
  v_queue integer[];
  v_head integer := 1;
  v_tail integer := 0;
  v_node integer;
  v_next integer;
  i integer;
BEGIN
  SELECT coalesce(array_agg(r.k ORDER BY r.i) FILTER (WHERE r.side = 0), '{}'),
         coalesce(array_agg(r.k ORDER BY r.i) FILTER (WHERE r.side = 1), '{}'),
         coalesce(max(r.k), 0)
    INTO v_from, v_to, v_nodes
    FROM (SELECT edge.i, ends.side, (dense_rank() OVER (ORDER BY ends.id))::integer AS k
            FROM (SELECT row_number() OVER () AS i, x.from_step_uuid, x.to_step_uuid
                    FROM tasker_workflow_steps s
                    JOIN tasker_workflow_step_edges x ON x.from_step_uuid = s.workflow_step_uuid
                   WHERE s.task_uuid = p_task_uuid) edge
            CROSS JOIN LATERAL (VALUES (0, edge.from_step_uuid), (1, edge.to_step_uuid)) ends(side, id)) r;

  v_edges := coalesce(array_length(v_from, 1), 0);
  IF v_edges = 0 THEN
    RETURN false;
  END IF;

  -- Counting sort of the edges by source, and each node's in-degree.
  v_indeg := array_fill(0, ARRAY[v_nodes]);
  v_start := array_fill(0, ARRAY[v_nodes + 1]);
  FOR i IN 1..v_edges LOOP
    v_start[v_from[i] + 1] := v_start[v_from[i] + 1] + 1;
    v_indeg[v_to[i]] := v_indeg[v_to[i]] + 1;
  END LOOP;
  v_start[1] := 1;
  FOR i IN 2..v_nodes + 1 LOOP
    v_start[i] := v_start[i] + v_start[i - 1];
  END LOOP;
  v_fill := v_start;
  v_adj := array_fill(0, ARRAY[v_edges]);
  FOR i IN 1..v_edges LOOP
    v_adj[v_fill[v_from[i]]] := v_to[i];
    v_fill[v_from[i]] := v_fill[v_from[i]] + 1;
  END LOOP;

  v_queue := array_fill(0, ARRAY[v_nodes]);
  FOR i IN 1..v_nodes LOOP
    IF v_indeg[i] = 0 THEN
      v_tail := v_tail + 1;
      v_queue[v_tail] := i;
    END IF;
  END LOOP;
  WHILE v_head <= v_tail LOOP
    v_node := v_queue[v_head];
    v_head := v_head + 1;
    FOR i IN v_start[v_node]..v_start[v_node + 1] - 1 LOOP
      v_next := v_adj[i];
      v_indeg[v_next] := v_indeg[v_next] - 1;
      IF v_indeg[v_next] = 0 THEN
        v_tail := v_tail + 1;
        v_queue[v_tail] := v_next;
      END IF;
    END LOOP;
  END LOOP;
  RETURN v_tail < v_nodes;
END
$$;
