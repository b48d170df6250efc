-- How many of each partner's checkpoints are kept, counted as each is kept
-- (_keep_partner_checkpoint), for the console's desk, which shows it for every partner
-- on every load: counting the rows took 52 ms per partner on SQLite and 163 ms on
-- PostgreSQL at a million kept, and a busy partner signs about three million a year.
CREATE TABLE partner_checkpoint_tally (
    party   TEXT PRIMARY KEY,
    kept    INTEGER NOT NULL
);
INSERT INTO partner_checkpoint_tally (party, kept)
    SELECT party, COUNT(*) FROM partner_checkpoints GROUP BY party;
