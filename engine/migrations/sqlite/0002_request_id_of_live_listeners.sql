-- A request_id is remembered only as long as the listener it registered exists: a deleted
-- listener's row (kept as a tombstone so that caches see the deletion) no longer holds it, and
-- the same request_id registers a new listener.
DROP INDEX listeners_by_request;
CREATE UNIQUE INDEX listeners_by_request ON listeners (namespace, request_id)
    WHERE request_id IS NOT NULL AND status <> 'deleted';
