-- The (source, id) lookups of deduplication and GetEvent probe this index by source and id, and
-- compare the namespace on the rows found (`IS NOT DISTINCT FROM`, which no index serves). With
-- the namespace first in the index and compared with `=`, the planner may take the primary key
-- (namespace, seq) instead and read the whole namespace per key: it does for a namespace that is
-- new since the last ANALYZE (estimated at one row), and the namespace then grows under load
-- with each lookup slower than the last (issue 12: throughput that decays).
CREATE UNIQUE INDEX events_by_source_id ON events (source, id, namespace);
DROP INDEX events_by_key;
