-- Fewer pages written per commit (issue 12): every index is one more page each commit dirties.
-- events_by_received and notifications_by_created go: retention and time bounds walk a
-- namespace's rows in sequence order instead, where times grow with the sequence.
DROP INDEX events_by_received;
DROP INDEX notifications_by_created;
