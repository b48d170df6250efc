-- Each partner's outbox entries numbered apart (`outbox.number`), for the cursor of its
-- pull (GET /federation/collections/outbox/objects/?next=N, Store.released_after). The
-- cursor was `outbox_id`, counted over every partner's entries: the difference between
-- two cursors a partner was given told it how many versions went to the others in
-- between, and when. A partner's numbers count its own entries only.
--
-- The entries queued before keep their `outbox_id` as their number (a partner's kept
-- cursor stays good), and every partner's numbers go on above any `outbox_id` handed
-- out (`outbox_floor`), even one of an entry deleted since. SQLite keeps no record of
-- that (an INTEGER PRIMARY KEY without AUTOINCREMENT gives the highest id again once
-- its row is deleted: a recall's purge deletes entries not yet pushed, which a partner
-- may have pulled), so the floor is the highest id left plus a million, more than the
-- entries at the top a purge could have deleted. A counter per partner
-- (`outbox_numbers`) never goes back, so a number is never given twice, whatever is
-- deleted. The trigger numbers every entry, whichever statement inserts it; writers run
-- one at a time.
ALTER TABLE outbox ADD COLUMN number INTEGER;
UPDATE outbox SET number = outbox_id;
CREATE TABLE outbox_floor (
    floor   INTEGER NOT NULL
);
INSERT INTO outbox_floor (floor)
    SELECT CASE WHEN MAX(outbox_id) IS NULL THEN 0 ELSE MAX(outbox_id) + 1000000 END FROM outbox;
CREATE TABLE outbox_numbers (
    party   TEXT PRIMARY KEY,
    last    INTEGER NOT NULL
);
CREATE UNIQUE INDEX outbox_numbered ON outbox (party, number);
CREATE TRIGGER outbox_number AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_numbers (party, last) SELECT NEW.party, floor + 1 FROM outbox_floor
        WHERE true ON CONFLICT (party) DO UPDATE SET last = last + 1;
    UPDATE outbox SET number = (SELECT last FROM outbox_numbers WHERE party = NEW.party)
        WHERE outbox_id = NEW.outbox_id;
END;
