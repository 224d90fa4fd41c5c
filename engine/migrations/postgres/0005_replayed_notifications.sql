-- Replays (ReplayEvents in FIRE mode, a registration's look-back) fire each fire id once. A
-- fire id names one firing of a listener (UUIDv5 of the listener and the contributing events).
-- A live firing is found by its fire id among the notifications created when its completing
-- event was received (found by sequence around that time); a replayed one by this partial index, which
-- only replayed notifications enter, so live publishes do not maintain it.
ALTER TABLE notifications ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX notifications_replayed_by_fire ON notifications (namespace, fire_id) WHERE replayed = 1;
