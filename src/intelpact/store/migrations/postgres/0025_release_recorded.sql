-- One `release` event per outbox entry, however often it is pushed (PostgreSQL dialect of
-- ../0025_release_recorded.sql, which says why).
ALTER TABLE outbox ADD COLUMN release_recorded TEXT;
