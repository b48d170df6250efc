-- The console's sessions (docs/console.md), in the store so that every process of
-- `intelpact serve --workers N` knows every session. Only the SHA-256 of the cookie's
-- token is kept (a copy of the database hands out no live session), with the person,
-- the session's CSRF token and when it began and was last seen (written at most once
-- every 30 seconds). A session idle for longer than the timeout is never returned
-- (the look-up tests `seen`) and is deleted at the next log-in; log-out, revocation
-- and a changed password delete a person's sessions.
CREATE TABLE sessions (
    digest   TEXT PRIMARY KEY,     -- SHA-256 (hex) of the session cookie's token
    name     TEXT NOT NULL,        -- the person
    csrf     TEXT NOT NULL,        -- the token every form of the session carries
    created  TEXT NOT NULL,
    seen     TEXT NOT NULL
);
CREATE INDEX sessions_by_name ON sessions (name);
CREATE INDEX sessions_by_seen ON sessions (seen);
