-- The console's sessions (PostgreSQL dialect of ../0012_sessions.sql).
CREATE TABLE sessions (
    digest   TEXT COLLATE "C" PRIMARY KEY,  -- SHA-256 (hex) of the session cookie's token
    name     TEXT COLLATE "C" NOT NULL,     -- the person
    csrf     TEXT NOT NULL,                 -- the token every form of the session carries
    created  TEXT NOT NULL,
    seen     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX sessions_by_name ON sessions (name);
CREATE INDEX sessions_by_seen ON sessions (seen);
