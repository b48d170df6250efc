-- The objects each kept partner audit event names (PostgreSQL dialect of
-- ../0031_partner_event_refs.sql, which says why). A NUL escape, which jsonb refuses,
-- is read as U+FFFD: only the ids are taken, and an id holds none.
CREATE TABLE partner_event_refs (
    party       TEXT COLLATE "C" NOT NULL,
    object_id   TEXT COLLATE "C" NOT NULL,
    leaf        BIGINT NOT NULL,
    PRIMARY KEY (party, object_id, leaf)
);

INSERT INTO partner_event_refs (party, object_id, leaf)
SELECT p.party, o->>0, p.leaf
FROM partner_events p,
     LATERAL (SELECT replace(p.body, '\u0000', '\ufffd')::jsonb AS j) AS b,
     LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(b.j->'objects') = 'array'
                                       THEN b.j->'objects' ELSE '[]'::jsonb END) AS o
WHERE jsonb_typeof(o) = 'array' AND jsonb_typeof(o->0) = 'string'
ON CONFLICT DO NOTHING;
