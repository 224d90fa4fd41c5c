-- Fewer pages written per commit (issue 12). Every index is one more page each commit dirties:
--
-- - events, notifications and deliveries become WITHOUT ROWID tables, clustered on their
--   primary key: a rowid table keeps its primary key in a second b-tree, written on every
--   insert and delete;
-- - events_by_received and notifications_by_created go: retention and time bounds walk a
--   namespace's rows in sequence order instead, where times grow with the sequence.
--
-- The tables are copied, which takes a while on a large database (once, at start-up).

CREATE TABLE events_new (
    namespace TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT,
    received_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (namespace, seq)
) WITHOUT ROWID;
INSERT INTO events_new SELECT namespace, seq, source, id, type, subject, received_us, body FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE UNIQUE INDEX events_by_key ON events (namespace, source, id);

CREATE TABLE notifications_new (
    namespace TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fire_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    target TEXT NOT NULL,
    correlation TEXT NOT NULL,
    event_seqs TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    trace TEXT NOT NULL,
    PRIMARY KEY (namespace, seq)
) WITHOUT ROWID;
INSERT INTO notifications_new
    SELECT namespace, seq, fire_id, kind, listener_id, target, correlation, event_seqs, created_us, trace
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;

CREATE TABLE deliveries_new (
    namespace TEXT NOT NULL,
    group_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    -- ready: when it may be claimed; leased: when the lease expires.
    available_us INTEGER NOT NULL,
    consumer TEXT,
    last_error TEXT,
    dead_us INTEGER,
    PRIMARY KEY (namespace, group_name, seq)
) WITHOUT ROWID;
INSERT INTO deliveries_new
    SELECT namespace, group_name, seq, state, attempt, available_us, consumer, last_error, dead_us
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_by_available ON deliveries (namespace, group_name, available_us) WHERE state <> 'dead';
