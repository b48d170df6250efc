-- A version's outbox entries by its seq: a recall's or a destruction's purge deletes
-- the entries not yet delivered of each version it destroys (WHERE seq = ?), and the
-- unique (party, seq) leads with the party, so each version destroyed read every entry
-- queued or delivered: a node that shares much paid for it on every object it
-- destroyed. PostgreSQL's outbox has had this index since 0002.
CREATE INDEX outbox_by_seq ON outbox (seq);
