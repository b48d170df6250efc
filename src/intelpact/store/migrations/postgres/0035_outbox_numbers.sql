-- Each partner's outbox entries numbered apart (PostgreSQL dialect of
-- ../0035_outbox_numbers.sql, which says why). The floor is the identity's last value
-- too: an entry deleted since may have had the highest id handed out.
ALTER TABLE outbox ADD COLUMN number BIGINT;
UPDATE outbox SET number = outbox_id;
CREATE TABLE outbox_floor (
    floor   BIGINT NOT NULL
);
INSERT INTO outbox_floor (floor)
    SELECT GREATEST(COALESCE(MAX(outbox_id), 0),
                    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                     FROM outbox_outbox_id_seq))
    FROM outbox;
CREATE TABLE outbox_numbers (
    party   TEXT COLLATE "C" PRIMARY KEY,
    last    BIGINT NOT NULL
);
CREATE UNIQUE INDEX outbox_numbered ON outbox (party, number);
CREATE FUNCTION outbox_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_numbers (party, last) SELECT NEW.party, floor + 1 FROM outbox_floor
        ON CONFLICT (party) DO UPDATE SET last = outbox_numbers.last + 1
        RETURNING last INTO NEW.number;
    RETURN NEW;
END
$$;
CREATE TRIGGER outbox_number BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_number();
