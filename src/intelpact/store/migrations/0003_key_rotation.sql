-- Every Ed25519 key a party has signed with (its own party's too): old keys stay
-- valid for what they signed before a rotation. The current key is peers.key_id
-- (or, for this node, keys/signing.pem).
CREATE TABLE party_keys (
    party       TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    added       TEXT NOT NULL,
    PRIMARY KEY (party, key_id)
);

-- Rotation announcements this node made, and to whom each was delivered.
CREATE TABLE key_announcements (
    announcement_id  INTEGER PRIMARY KEY,
    body             TEXT NOT NULL,
    made             TEXT NOT NULL
);
CREATE TABLE key_deliveries (
    announcement_id  INTEGER NOT NULL REFERENCES key_announcements(announcement_id),
    party            TEXT NOT NULL,
    delivered        TEXT,
    PRIMARY KEY (announcement_id, party)
);
