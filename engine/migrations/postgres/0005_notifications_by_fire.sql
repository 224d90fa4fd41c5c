-- A fire id names one firing of a listener (UUIDv5 of the listener and the contributing events):
-- a namespace holds at most one notification per fire id, so a replay in FIRE mode that finds a
-- fire id already fired (live, or by an earlier replay) does not fire it again.
CREATE UNIQUE INDEX notifications_by_fire ON notifications (namespace, fire_id);
