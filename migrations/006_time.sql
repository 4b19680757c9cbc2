-- Time, identity and fencing. `runAt`: a task is blocked until then (RFC 3339 text, as the
-- other times). `retryDelaySeconds`: the back-off base after a failed attempt.
-- `idempotencyKey`: one task per key and venture for as long as the file holds the task;
-- the scheduler enforces it, and the index makes a second row with a key impossible.
ALTER TABLE Task ADD COLUMN runAt TEXT;
ALTER TABLE Task ADD COLUMN retryDelaySeconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE Task ADD COLUMN idempotencyKey TEXT;
CREATE UNIQUE INDEX Task_idempotency_idx ON Task (ventureId, idempotencyKey) WHERE idempotencyKey IS NOT NULL;
