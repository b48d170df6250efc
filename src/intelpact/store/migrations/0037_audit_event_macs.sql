-- Each audit event's MAC: HMAC-SHA256 of its leaf index and body, under a key kept in
-- the node's key directory, not here (crypto/eventmacs.py, docs/audit.md "Who wrote
-- each event"). An event appended without this node's key, by someone with write
-- access to this database alone, has none that verifies: `audit verify` names it, and
-- the integrator raises the alert event-forged. Events appended before the key was made
-- (its `since`) have none (NULL). Not part of the leaf: the tree and its checkpoints,
-- and what partners hold of them, are unchanged.
ALTER TABLE audit_events ADD COLUMN mac BLOB;
