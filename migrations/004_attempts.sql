-- Every claim of a task, oldest first: who held it and how the attempt ended. Rows leave
-- with their task (task and venture deletes, retention pruning).
CREATE TABLE TaskAttempt (
    taskId TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agentId TEXT NOT NULL,
    claimedAt TEXT NOT NULL,
    endedAt TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    actualCost REAL,
    tokensUsed INTEGER,
    PRIMARY KEY (taskId, attempt)
) WITHOUT ROWID;
