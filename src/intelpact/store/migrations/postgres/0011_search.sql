-- The console's search (docs/console.md). PostgreSQL has no text index yet: the text
-- filter is a substring test on the stored body, which the node re-checks on name and
-- description (a scan; the 200 ms target is the embedded store's). The originator
-- filter walks one originator's rows in seq order.
CREATE INDEX objects_by_originator ON objects (collection_id, originator, seq);
