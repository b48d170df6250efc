-- Failed logins counted for the whole node, not per process: `serve --workers N` runs a
-- LoginThrottle in each worker, and a restart forgot them all, so a guesser had N times
-- the attempts before a lock-out, and a fresh set after each restart. Each throttle key (a
-- name, a client address) is kept as its SHA-256, never as given: no name is stored here,
-- whatever was typed. A window of `window` seconds begins at a key's first failure
-- (`since`); `limit` failures in it lock the key until `locked_until` (Unix seconds).
-- A row whose window and lock are both over is deleted as the next failure is counted.
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    since         REAL NOT NULL,
    locked_until  REAL NOT NULL
);
CREATE INDEX login_failures_by_since ON login_failures (since);
