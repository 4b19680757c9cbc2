-- The persister appends activities outside the secondary indexes (`indexed = 0`) and moves
-- the newest few hundred into them at once (`indexed = 1`), in the same commit as a batch.
-- Indexed one by one, the 64 or so agents of a busy fleet each had a leaf page of
-- `Activity_agentId_idx` rewritten in nearly every commit: 40% of the pages the persister
-- wrote (docs/PERFORMANCE.md, "Fourth pass"). The rows not yet indexed are always the newest,
-- a short tail that filtered reads scan by rowid (`store/activities.rs`).
-- Rows already here are indexed, as they were.
ALTER TABLE Activity ADD COLUMN indexed INTEGER NOT NULL DEFAULT 1;
DROP INDEX Activity_type_idx;
DROP INDEX Activity_ventureId_idx;
DROP INDEX Activity_taskId_idx;
DROP INDEX Activity_agentId_idx;
CREATE INDEX Activity_type_idx ON Activity (type) WHERE indexed = 1;
CREATE INDEX Activity_ventureId_idx ON Activity (ventureId) WHERE indexed = 1;
CREATE INDEX Activity_taskId_idx ON Activity (taskId) WHERE indexed = 1;
CREATE INDEX Activity_agentId_idx ON Activity (agentId) WHERE indexed = 1;
