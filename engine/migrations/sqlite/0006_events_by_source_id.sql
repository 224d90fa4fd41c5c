-- Nothing on SQLite: its planner serves the (source, id) lookups from events_by_key (namespace,
-- source, id), whose three columns they all compare (`IS NOT DISTINCT FROM` is `IS` there, which
-- an index serves like `=`). The Postgres migration of this number reorders that index.
SELECT 1;
