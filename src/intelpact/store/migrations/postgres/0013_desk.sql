-- The security officer's desk (PostgreSQL dialect of ../0013_desk.sql): its lists are
-- paged newest first with a LIMIT, each page read along one of these indexes.
CREATE INDEX disseminations_by_released ON disseminations (released, party, object_id);
CREATE INDEX recalls_by_issued ON recalls (issued, object_id, party);
CREATE INDEX consents_by_made ON consents (made, request_id);
