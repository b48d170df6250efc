-- The security officer's desk (docs/console.md) pages its lists newest first with a
-- LIMIT: these indexes let each page stop after its rows instead of sorting the whole
-- record (compromise_reports has compromise_by_filed already, from 0007).
CREATE INDEX disseminations_by_released ON disseminations (released, party, object_id);
CREATE INDEX recalls_by_issued ON recalls (issued, object_id, party);
CREATE INDEX consents_by_made ON consents (made, request_id);
