-- Consent for third-party release (docs/controls.md): a holder asks the originator to
-- let it pass an object on to a third party; the originator's officer approves with a
-- signed consent token (scope: holder, recipient, objects/versions, purpose, expiry) or
-- refuses with a reason. One row per request, on both sides: "out" at the holder that
-- asked (with the token once approved: what its release decision uses), "in" at the
-- originator (with the token it signed).
CREATE TABLE consents (
    request_id  TEXT PRIMARY KEY,
    direction   TEXT NOT NULL,        -- out (we asked) or in (asked of us)
    holder      TEXT NOT NULL,
    originator  TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    versions    TEXT NOT NULL,        -- JSON list of the versions asked for
    purpose     TEXT NOT NULL,
    requested_expires TEXT,
    requester   TEXT NOT NULL,        -- JSON: pseudonym, nationality, clearance
    made        TEXT NOT NULL,
    status      TEXT NOT NULL,        -- pending, approved or refused
    decided     TEXT,
    reason      TEXT,                 -- why it was refused
    token       TEXT,                 -- the signed consent token (canonical JSON)
    expires     TEXT                  -- the token's expiry
);
CREATE INDEX consents_tokens ON consents (direction, status, recipient);

-- An originator's record of an onward release with consent: the holder that passed
-- the object on (NULL: this node released it itself).
ALTER TABLE disseminations ADD COLUMN via TEXT;
