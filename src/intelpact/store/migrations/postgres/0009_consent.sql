-- Consent for third-party release (PostgreSQL dialect of ../0009_consent.sql).
CREATE TABLE consents (
    request_id  TEXT PRIMARY KEY,
    direction   TEXT COLLATE "C" NOT NULL,  -- out (we asked) or in (asked of us)
    holder      TEXT COLLATE "C" NOT NULL,
    originator  TEXT COLLATE "C" NOT NULL,
    recipient   TEXT COLLATE "C" NOT NULL,
    object_id   TEXT COLLATE "C" NOT NULL,
    versions    TEXT NOT NULL,        -- JSON list of the versions asked for
    purpose     TEXT NOT NULL,
    requested_expires TEXT,
    requester   TEXT NOT NULL,        -- JSON: pseudonym, nationality, clearance
    made        TEXT NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,  -- pending, approved or refused
    decided     TEXT,
    reason      TEXT,                 -- why it was refused
    token       TEXT,                 -- the signed consent token (canonical JSON)
    expires     TEXT                  -- the token's expiry
);
CREATE INDEX consents_tokens ON consents (direction, status, recipient);

-- An originator's record of an onward release with consent: the holder that passed
-- the object on (NULL: this node released it itself).
ALTER TABLE disseminations ADD COLUMN via TEXT;
