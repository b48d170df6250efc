-- Why the holder's latest answer to a recall did not confirm it (PostgreSQL dialect of
-- ../0023_recall_answers.sql, which says why).
ALTER TABLE recalls ADD COLUMN unconfirmed TEXT;

CREATE INDEX notices_recalled_here ON notices (object_id) WHERE direction = 'in'
    AND kind = 'recall';

UPDATE recalls SET unconfirmed = 'answered, naming nothing destroyed'
WHERE destroyed IS NULL AND EXISTS (
    SELECT 1 FROM notices n WHERE n.direction = 'in' AND n.kind = 'destroyed'
    AND n.party = recalls.party AND n.object_id = recalls.object_id
    AND strpos(n.body, '"in_reply_to":"' || recalls.notice_id || '"') > 0
    AND strpos(n.body, '"destroyed":[]') > 0);
