-- Task graphs and cancellation. A task's dependencies are rows of their own, in the order
-- given; the scheduler loads those of unfinished tasks at start and derives `blockedBy`.
-- `dependsOnId` is indexed for the dependents of a task (the graph read backwards).
CREATE TABLE TaskDependency (
    taskId      TEXT NOT NULL,
    dependsOnId TEXT NOT NULL,
    position    INTEGER NOT NULL,
    PRIMARY KEY (taskId, dependsOnId)
) WITHOUT ROWID;
CREATE INDEX TaskDependency_dependsOn_idx ON TaskDependency (dependsOnId);

ALTER TABLE Task ADD COLUMN onDependencyFailure TEXT NOT NULL DEFAULT 'cancel';
ALTER TABLE Task ADD COLUMN cancelRequested INTEGER NOT NULL DEFAULT 0;
