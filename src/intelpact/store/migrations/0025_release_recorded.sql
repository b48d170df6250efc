-- One `release` event per outbox entry, however often it is pushed (Store.record_release,
-- docs/audit.md): the event is durable before the entry first leaves, and a push that
-- does not arrive (the partner down, busy, refusing) is tried again without another.
-- `release_recorded`: when the entry's event was appended (NULL: not yet).
ALTER TABLE outbox ADD COLUMN release_recorded TEXT;
