-- Compromise reports (docs/audit.md, "Compromise reports"): a report of suspected loss
-- or compromise, sent to the originator of the objects, acknowledged and closed.
--
-- compromise_reports holds every report this node filed or received. body is the
-- signed report (canonical JSON) with its access history; ack_body and close_body the
-- signed acknowledgement and closure. The other columns only list and find reports.
CREATE TABLE compromise_reports (
    report_id    TEXT PRIMARY KEY,
    direction    TEXT NOT NULL,       -- outgoing, incoming or local (our own objects)
    reporter     TEXT NOT NULL,       -- the party that filed it
    originator   TEXT NOT NULL,       -- the party it is sent to
    object_count INTEGER NOT NULL,
    filed        TEXT NOT NULL,
    discovered   TEXT NOT NULL,
    deadline     TEXT NOT NULL,       -- discovered + the agreement's breach_notice_hours
    body         TEXT NOT NULL,
    delivered    TEXT,                -- outgoing: receipt verified; incoming: received
    acknowledged TEXT,
    ack_body     TEXT,
    closed       TEXT,
    close_body   TEXT
);
CREATE INDEX compromise_by_filed ON compromise_reports (filed, report_id);

-- What is still to be sent about reports (the report itself, an acknowledgement, a
-- closure), to one partner each, oldest first: the courier's queue, retried with
-- backoff. receipt is the partner's signed receipt once delivered.
CREATE TABLE compromise_messages (
    message_id   INTEGER PRIMARY KEY,
    report_id    TEXT NOT NULL REFERENCES compromise_reports (report_id),
    party        TEXT NOT NULL,
    kind         TEXT NOT NULL,       -- report, ack or close
    body         TEXT NOT NULL,       -- the signed message (canonical JSON)
    made         TEXT NOT NULL,
    delivered    TEXT,
    receipt      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,   -- refusals by the partner
    error        TEXT                 -- why the last attempt failed
);
CREATE INDEX compromise_pending ON compromise_messages (party, message_id)
    WHERE delivered IS NULL;
CREATE INDEX compromise_messages_by_report ON compromise_messages (report_id, message_id);
