-- A reclassification this node has begun of its own object (Controls.reclassify): kept
-- before its new version is published, in a transaction of its own, and removed in the
-- transaction that completes it (joins the older versions, keeps it in
-- `reclassifications`, queues the holders' notices). The publication and the completion
-- are two transactions: one left here when the node opens was cut short between them (a
-- crash, a failed write), and is completed then if its version was published, or
-- forgotten if it was not (Controls.resume).
CREATE TABLE reclassify_intents (
    object_id   TEXT NOT NULL,
    version     TEXT NOT NULL,        -- the version the reclassification publishes
    reason      TEXT NOT NULL,
    made        TEXT NOT NULL,
    PRIMARY KEY (object_id, version)
);
