-- Every event about a partner's objects is numbered among this log's events about that
-- originator's objects, 0, 1, 2... in leaf order, and its number is in its body (the
-- leaf): a partner that reads the events about its objects can see that none is left
-- out (docs/audit.md, "Completeness"). `seq` repeats the body's number to find the
-- newest one; events appended before this migration have none (NULL), and numbering
-- starts at the first event after it. Unique: no number is given twice.
ALTER TABLE audit_events ADD COLUMN seq INTEGER;
CREATE UNIQUE INDEX audit_by_originator_seq ON audit_events (originator, seq);
