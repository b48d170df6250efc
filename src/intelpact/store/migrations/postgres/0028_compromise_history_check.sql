-- The outcome of checking an incoming compromise report's access history (PostgreSQL
-- dialect of ../0028_compromise_history_check.sql, which says why).
ALTER TABLE compromise_reports ADD COLUMN history_checked TEXT;
ALTER TABLE compromise_reports ADD COLUMN history_check TEXT;
