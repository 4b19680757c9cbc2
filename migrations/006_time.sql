-- Time, identity and fencing. `runAt`: a task is blocked until then (RFC 3339 text, as the
-- other times). `retryDelaySeconds`: the back-off base after a failed attempt.
-- `idempotencyKey`: one task per key and venture for as long as the file holds the task;
-- the scheduler enforces it, and the index makes a second row with a key impossible.
ALTER TABLE Task ADD COLUMN runAt TEXT;
ALTER TABLE Task ADD COLUMN retryDelaySeconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE Task ADD COLUMN idempotencyKey TEXT;
CREATE UNIQUE INDEX Task_idempotency_idx ON Task (ventureId, idempotencyKey) WHERE idempotencyKey IS NOT NULL;

-- The error of the report last applied, which a repeat is compared with; `error` itself may
-- have been replaced since by a cancel's reason. Until now the two were the same column.
ALTER TABLE Task ADD COLUMN reportedError TEXT;
UPDATE Task SET reportedError = error WHERE reportedBy IS NOT NULL;
