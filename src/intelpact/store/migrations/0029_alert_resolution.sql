-- A security officer resolves an alert, saying what was done (AuditLog.resolve_alert,
-- `intelpact audit resolve`): when, and the note. NULL: still open. The alert itself is
-- kept, with its audit event: resolving it only takes it off the list of open ones.
ALTER TABLE alerts ADD COLUMN resolved TEXT;
ALTER TABLE alerts ADD COLUMN resolution TEXT;
