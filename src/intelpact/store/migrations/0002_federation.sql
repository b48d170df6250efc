-- Federation: pinned partners, the transactional outbox, the dissemination
-- record, pull cursors, and refused receipts.

CREATE TABLE peers (
    party           TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    public_key      TEXT NOT NULL,     -- base64 raw Ed25519
    key_id          TEXT NOT NULL,
    tls_cert        TEXT NOT NULL,     -- PEM, pinned
    tls_fingerprint TEXT NOT NULL,
    card            TEXT NOT NULL,     -- the signed card as received
    added           TEXT NOT NULL
);

-- One row per (object version, partner) the release decision allowed; written
-- in the same transaction as the object.
CREATE TABLE outbox (
    outbox_id    INTEGER PRIMARY KEY,
    party        TEXT NOT NULL,
    seq          INTEGER NOT NULL REFERENCES objects(seq) ON DELETE CASCADE,
    enqueued     TEXT NOT NULL,
    delivered    TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (party, seq)
);
CREATE INDEX outbox_pending ON outbox (party, delivered, outbox_id);

CREATE TABLE disseminations (
    party        TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    version      TEXT NOT NULL,
    body_hash    TEXT NOT NULL,
    released     TEXT NOT NULL,
    receipt_at   TEXT,
    receipt      TEXT,             -- the partner's signed receipt, JSON
    PRIMARY KEY (party, object_id, version)
);

-- How far this node has pulled each partner's outbox.
CREATE TABLE pull_cursors (
    party   TEXT PRIMARY KEY,
    cursor  INTEGER NOT NULL
);

-- Everything a partner sent that this node refused, with the reason.
CREATE TABLE refusals (
    refusal_id  INTEGER PRIMARY KEY,
    party       TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          TEXT NOT NULL
);
