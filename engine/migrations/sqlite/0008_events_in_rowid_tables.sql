-- Events and notifications go back to rowid tables (issue 12), keeping their primary key
-- (namespace, seq) as a unique index beside the table.
--
-- Migration 0004 made them WITHOUT ROWID tables to save that index. But a WITHOUT ROWID table is
-- an index b-tree, whose interior pages hold whole rows: at most about 230 bytes of a cell stay
-- on a 1 KiB page, so a stored event (some 700 bytes) or notification (some 300) spills onto an
-- overflow page in every interior cell, the tree holds a few cells per interior page (it was ten
-- levels deep at a million events), and every comparison on the way down an insert reads the
-- whole row, overflow page included (a `pread` each, nine per sequential publish). A rowid
-- table keeps its rows in its leaves only (a row of up to 989 bytes fits a 1 KiB leaf), is
-- descended by integer keys, and is appended to at its end; its primary-key index holds
-- (namespace, seq, rowid), some 30 bytes an entry, also appended to.
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
);
INSERT INTO events_new SELECT namespace, seq, source, id, type, subject, received_us, body
    FROM events ORDER BY namespace, seq;
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
    replayed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, seq)
);
INSERT INTO notifications_new
    SELECT namespace, seq, fire_id, kind, listener_id, target, correlation, event_seqs, created_us, trace, replayed
    FROM notifications ORDER BY namespace, seq;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE UNIQUE INDEX notifications_replayed_by_fire ON notifications (namespace, fire_id) WHERE replayed = 1;
