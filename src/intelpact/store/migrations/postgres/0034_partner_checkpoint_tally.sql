-- How many of each partner's checkpoints are kept (PostgreSQL dialect of
-- ../0034_partner_checkpoint_tally.sql, which says why).
CREATE TABLE partner_checkpoint_tally (
    party   TEXT COLLATE "C" PRIMARY KEY,
    kept    BIGINT NOT NULL
);
INSERT INTO partner_checkpoint_tally (party, kept)
    SELECT party, COUNT(*) FROM partner_checkpoints GROUP BY party;
