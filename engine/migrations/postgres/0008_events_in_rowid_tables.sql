-- Nothing on Postgres, whose tables are heaps with their primary key beside them already. The
-- SQLite migration of this number moves events and notifications out of WITHOUT ROWID tables.
SELECT 1;
