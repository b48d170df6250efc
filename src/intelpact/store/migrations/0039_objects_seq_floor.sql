-- A stored version's `seq` is never given twice, so a reader's paging cursor (the seq of
-- the last row served) never passes a row stored after it was given (docs/node.md,
-- "paging never skips"). `objects.seq` is an INTEGER PRIMARY KEY without AUTOINCREMENT:
-- SQLite gives a new row the highest seq left plus one, so once the newest rows were
-- deleted (a TAXII DELETE, a recall's purge) the next row took a seq a cursor had passed,
-- and that reader never saw it. Rebuilding the table with AUTOINCREMENT would copy every
-- row; instead `objects_seq_floor` keeps the highest seq deleted (the trigger below), and
-- a row inserted at or below it is moved to just above it. Only the first row after such
-- a delete is moved: the rows after it are above the floor.
--
-- SQLite kept no record of the seqs deleted before this migration, so the floor starts
-- at the highest seq left plus a million (as 0035 did for the outbox), more than the
-- rows at the top a delete could have taken.
CREATE TABLE objects_seq_floor (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO objects_seq_floor (one, seq)
    SELECT 1, CASE WHEN max(seq) IS NULL THEN 0 ELSE max(seq) + 1000000 END FROM objects;

CREATE TRIGGER objects_seq_deleted AFTER DELETE ON objects
    WHEN old.seq > (SELECT seq FROM objects_seq_floor) BEGIN
    UPDATE objects_seq_floor SET seq = old.seq;
END;

CREATE TRIGGER objects_seq_above_floor AFTER INSERT ON objects
    WHEN new.seq <= (SELECT seq FROM objects_seq_floor) BEGIN
    UPDATE objects SET seq = (SELECT seq FROM objects_seq_floor) + 1 WHERE seq = new.seq;
END;
