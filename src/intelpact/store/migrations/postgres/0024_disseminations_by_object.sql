-- An object's holders, for a recall or a reclassification (PostgreSQL dialect of
-- ../0024_disseminations_by_object.sql, which says why).
CREATE INDEX disseminations_by_object ON disseminations (object_id);
