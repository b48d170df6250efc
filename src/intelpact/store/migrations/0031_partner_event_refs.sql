-- The objects each kept partner audit event names (its `objects`' ids), so that the
-- events about one object are found by key: `audit partner --object`, the console's
-- partner view filtered by object, and a compromise report's history check (the objects
-- reported). Kept with the events (Store.set_partner_audit_cursor), as audit_refs is
-- for this node's own log. The events kept before are indexed here from their bodies.
CREATE TABLE partner_event_refs (
    party       TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    leaf        INTEGER NOT NULL,
    PRIMARY KEY (party, object_id, leaf)
);

INSERT OR IGNORE INTO partner_event_refs (party, object_id, leaf)
SELECT p.party, json_extract(o.value, '$[0]'), p.leaf
FROM partner_events p, json_each(p.body, '$.objects') o
WHERE json_valid(p.body) AND json_type(p.body, '$.objects') = 'array'
  AND o.type = 'array' AND json_type(o.value, '$[0]') = 'text';
