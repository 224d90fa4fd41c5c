-- eventbus schema (SQLite). Times are microseconds since the Unix epoch; ids are UUID text;
-- JSON columns are text. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    next_event_seq INTEGER NOT NULL DEFAULT 1,
    next_notification_seq INTEGER NOT NULL DEFAULT 1,
    next_listener_ord INTEGER NOT NULL DEFAULT 1,
    -- Bumped by every change to the namespace's listeners or their state; a process whose
    -- cached listeners are older reloads the rows changed since.
    listener_gen INTEGER NOT NULL DEFAULT 0,
    -- Bumped when retention removes listener rows: caches reload the namespace in full.
    listener_epoch INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE events (
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
CREATE UNIQUE INDEX events_by_key ON events (namespace, source, id);
CREATE INDEX events_by_received ON events (received_us);

CREATE TABLE listeners (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    ord INTEGER NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    fire_id TEXT,
    finished_us INTEGER,
    deadline_us INTEGER,
    created_us INTEGER NOT NULL,
    trace TEXT NOT NULL,
    request_id TEXT,
    gen INTEGER NOT NULL
);
CREATE UNIQUE INDEX listeners_by_request ON listeners (namespace, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX listeners_by_gen ON listeners (namespace, gen);
CREATE INDEX listeners_by_ord ON listeners (namespace, ord);
CREATE INDEX listeners_by_target ON listeners (namespace, kind, target);
CREATE INDEX listeners_by_deadline ON listeners (deadline_us) WHERE status = 'active' AND deadline_us IS NOT NULL;
CREATE INDEX listeners_by_finished ON listeners (finished_us) WHERE finished_us IS NOT NULL;

CREATE TABLE partials (
    listener_id TEXT NOT NULL,
    corr_key TEXT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (listener_id, corr_key)
);

CREATE TABLE notifications (
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
);
CREATE INDEX notifications_by_created ON notifications (created_us);

CREATE TABLE consumer_groups (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    -- JSON: kinds, workflow_ids, max_attempts (fixed at creation).
    settings TEXT NOT NULL,
    -- The last notification sequence the group has looked at.
    read_seq INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- In-flight and dead deliveries; an acked delivery is deleted.
CREATE TABLE deliveries (
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
);
CREATE INDEX deliveries_by_available ON deliveries (namespace, group_name, available_us) WHERE state <> 'dead';
