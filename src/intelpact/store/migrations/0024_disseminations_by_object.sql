-- An object's holders, for a recall or a reclassification (Store.disseminations with an
-- object id): the primary key (party, object_id, version) leads with the party, so
-- without this every recall read the whole dissemination record.
CREATE INDEX disseminations_by_object ON disseminations (object_id);
