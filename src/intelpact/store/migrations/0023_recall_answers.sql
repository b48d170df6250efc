-- The holder's answer to a recall that does not confirm it (docs/controls.md, "What
-- confirms a recall"): `recalls` keeps the state of the latest recall of each object from
-- each holder (an earlier one stays in `notices` and the audit log). `destroyed` and
-- `receipt`: the answer to that recall that confirmed it; `unconfirmed`: why its latest
-- answer did not (it names nothing destroyed, or does not account for every version the
-- dissemination record says went to the holder). NULL both: not answered yet.
ALTER TABLE recalls ADD COLUMN unconfirmed TEXT;

-- The recalls applied here, by object: a holder stores nothing more of an object its
-- originator recalled from it (Store.add_objects), whoever sends it.
CREATE INDEX notices_recalled_here ON notices (object_id) WHERE direction = 'in'
    AND kind = 'recall';

-- Answers kept before this migration that named nothing destroyed (the notice's canonical
-- JSON holds "destroyed":[] and the recall's id as its in_reply_to).
UPDATE recalls SET unconfirmed = 'answered, naming nothing destroyed'
WHERE destroyed IS NULL AND EXISTS (
    SELECT 1 FROM notices n WHERE n.direction = 'in' AND n.kind = 'destroyed'
    AND n.party = recalls.party AND n.object_id = recalls.object_id
    AND instr(n.body, '"in_reply_to":"' || recalls.notice_id || '"') > 0
    AND instr(n.body, '"destroyed":[]') > 0);
