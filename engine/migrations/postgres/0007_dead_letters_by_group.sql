-- Dead letters by group, for the metrics' counts (`Store::group_backlogs`), which would otherwise
-- read the whole table at every scrape. Only rows that are dead enter it: live deliveries,
-- inserted and deleted thousands of times a second, do not maintain it.
CREATE INDEX deliveries_dead ON deliveries (namespace, group_name) WHERE state = 'dead';
