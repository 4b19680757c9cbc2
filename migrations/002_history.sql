-- History lives in the database: memory holds only unfinished tasks. These indexes serve
-- start-up (unfinished tasks, and the finished counts per venture, from the index alone),
-- listings in `createdAt, id` order with `?after=` cursors, and retention, without a
-- scan that grows with history.

-- Start-up loads `status IN ('queue', 'active', ...)`; finished counts are counted here.
CREATE INDEX Task_status_venture_idx ON Task (status, ventureId);

-- List order, and the cursor of `?after=`. Neither column changes after the insert, so
-- upserts never rewrite these entries.
CREATE INDEX Task_created_idx ON Task (createdAt, id);
DROP INDEX Task_ventureId_idx;
CREATE INDEX Task_venture_created_idx ON Task (ventureId, createdAt, id);

-- Retention: completed tasks age by completedAt, failed ones by updatedAt. Partial, so
-- only finished rows are in them and active tasks never touch them.
CREATE INDEX Task_completed_age_idx ON Task (completedAt) WHERE status = 'completed';
CREATE INDEX Task_failed_age_idx ON Task (updatedAt) WHERE status IN ('failed', 'cancelled');
