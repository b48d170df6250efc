-- The outcome of checking an incoming compromise report's access history against the
-- reporter's partner audit (CompromiseReports.check, docs/audit.md "Compromise
-- reports"): when, and what was found ("complete", or the events left out, or why it
-- could not be checked). NULL: not checked yet; `serve` checks it in the background.
ALTER TABLE compromise_reports ADD COLUMN history_checked TEXT;
ALTER TABLE compromise_reports ADD COLUMN history_check TEXT;
