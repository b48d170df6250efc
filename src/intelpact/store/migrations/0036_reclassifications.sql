-- Each reclassification this node made of its own objects (Controls.reclassify), kept
-- in the transaction that joins the new marking's label with its older versions' here
-- and queues the holders' notices. The Relabeller joins it again under an amended
-- agreement, as it does the reclassify notices a holder applied: kept even when no
-- notice went anywhere (no holder yet), since a partner pinned later must get the older
-- versions only as the new marking allows.
CREATE TABLE reclassifications (
    object_id   TEXT NOT NULL,
    version     TEXT NOT NULL,        -- the reclassified version: older ones are joined
    marking     TEXT NOT NULL,        -- its new national marking-definition (JSON)
    reason      TEXT NOT NULL,        -- as its notices say it, to a partner pinned later
    made        TEXT NOT NULL,
    PRIMARY KEY (object_id, version)
);

-- The reclassify notices applied here, by object: joined with an older version of it
-- as it arrives (Federation.receive), not only with those held when each was applied.
CREATE INDEX notices_reclassify ON notices (object_id)
    WHERE kind = 'reclassify' AND direction = 'in';
