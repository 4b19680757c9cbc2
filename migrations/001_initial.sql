-- The seed's four tables, with the seed's camelCase column names, so that
-- `sqlite3 mission-control.db 'SELECT * FROM Task;'` reads as it always did.
-- Timestamps are RFC 3339 UTC text with milliseconds; they sort as text.

CREATE TABLE Venture (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    icon          TEXT NOT NULL,
    status        TEXT NOT NULL,
    priority      TEXT NOT NULL,
    capitalSpent  REAL NOT NULL DEFAULT 0,
    capitalBudget REAL NOT NULL DEFAULT 0,
    description   TEXT,
    createdAt     TEXT NOT NULL,
    updatedAt     TEXT NOT NULL
);

CREATE TABLE Task (
    id             TEXT PRIMARY KEY NOT NULL,
    title          TEXT NOT NULL,
    description    TEXT,
    status         TEXT NOT NULL,
    priority       TEXT NOT NULL,
    estimatedCost  REAL,
    actualCost     REAL,
    tags           TEXT,
    output         TEXT,
    error          TEXT,
    assignedTo     TEXT,
    ventureId      TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    maxAttempts    INTEGER NOT NULL DEFAULT 3,
    leaseSeconds   INTEGER NOT NULL DEFAULT 1800,
    leaseExpiresAt TEXT,
    claimedAt      TEXT,
    createdAt      TEXT NOT NULL,
    updatedAt      TEXT NOT NULL,
    completedAt    TEXT,
    -- The agent whose completion report was applied last, and for which attempt
    -- (for retry-safe repeats and stale-report detection).
    reportedBy      TEXT,
    reportedAttempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX Task_ventureId_idx ON Task (ventureId);

CREATE TABLE Agent (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    model         TEXT NOT NULL,
    currentTask   TEXT,
    tokensUsed    INTEGER NOT NULL DEFAULT 0,
    maxTokens     INTEGER NOT NULL DEFAULT 0,
    sessionsCount INTEGER NOT NULL DEFAULT 0,
    lastActiveAt  TEXT NOT NULL,
    createdAt     TEXT NOT NULL,
    updatedAt     TEXT NOT NULL
);

-- Newest first is rowid order: the persister appends activities in the order they happened.
CREATE TABLE Activity (
    id          TEXT PRIMARY KEY NOT NULL,
    type        TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT,
    ventureId   TEXT,
    taskId      TEXT,
    agentId     TEXT,
    createdAt   TEXT NOT NULL
);
CREATE INDEX Activity_type_idx ON Activity (type);
CREATE INDEX Activity_ventureId_idx ON Activity (ventureId);
CREATE INDEX Activity_taskId_idx ON Activity (taskId);
CREATE INDEX Activity_agentId_idx ON Activity (agentId);
