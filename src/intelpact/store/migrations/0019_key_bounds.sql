-- A retired key's bound: the size of the last checkpoint of its party's audit log it
-- signed (the final checkpoint, signed in the rotation's own transaction). A checkpoint
-- signed by a retired key is accepted only up to that size, here and at partners
-- (docs/audit.md, "Keys and rotation"). NULL: the party's current key.
ALTER TABLE party_keys ADD COLUMN last_size INTEGER;

-- Keys retired before this column have no announced bound: each is bounded by what it is
-- known to have signed. A partner's old keys by the largest checkpoint of its log held
-- here (every checkpoint held was witnessed under them or before them) ...
UPDATE party_keys SET last_size = (
    SELECT coalesce(max(c.size), 0) FROM partner_checkpoints c
    WHERE c.party = party_keys.party)
WHERE party IN (SELECT party FROM peers)
  AND key_id <> (SELECT p.key_id FROM peers p WHERE p.party = party_keys.party);

-- ... and this node's own (the rows of a party that is not a partner: before this
-- version, its current key was never stored here, only the retired ones) by the largest
-- checkpoint of its own log.
UPDATE party_keys SET last_size = (SELECT coalesce(max(size), 0) FROM audit_checkpoints)
WHERE party NOT IN (SELECT party FROM peers);
