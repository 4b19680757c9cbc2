-- The SQLite schema (migrations/001-006) in PostgreSQL: the same tables and camelCase
-- columns (quoted, so PostgreSQL keeps their case). Timestamps are RFC 3339 UTC text with
-- milliseconds, as in SQLite; ids and times compare byte by byte (COLLATE "C"), so list
-- order and `?after=` cursors agree with the scheduler's own order.

CREATE TABLE "Venture" (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL,
    icon            TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        TEXT NOT NULL,
    "capitalSpent"  DOUBLE PRECISION NOT NULL DEFAULT 0,
    "capitalBudget" DOUBLE PRECISION NOT NULL DEFAULT 0,
    description     TEXT,
    "createdAt"     TEXT COLLATE "C" NOT NULL,
    "updatedAt"     TEXT COLLATE "C" NOT NULL
);

CREATE TABLE "Task" (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    title                 TEXT NOT NULL,
    description           TEXT,
    status                TEXT NOT NULL,
    priority              TEXT NOT NULL,
    "estimatedCost"       DOUBLE PRECISION,
    "actualCost"          DOUBLE PRECISION,
    tags                  TEXT,
    output                TEXT,
    error                 TEXT,
    "assignedTo"          TEXT COLLATE "C",
    "ventureId"           TEXT COLLATE "C" NOT NULL,
    attempts              BIGINT NOT NULL DEFAULT 0,
    "maxAttempts"         BIGINT NOT NULL DEFAULT 3,
    "leaseSeconds"        BIGINT NOT NULL DEFAULT 1800,
    "leaseExpiresAt"      TEXT COLLATE "C",
    "claimedAt"           TEXT COLLATE "C",
    "createdAt"           TEXT COLLATE "C" NOT NULL,
    "updatedAt"           TEXT COLLATE "C" NOT NULL,
    "completedAt"         TEXT COLLATE "C",
    "reportedBy"          TEXT,
    "reportedAttempt"     BIGINT NOT NULL DEFAULT 0,
    "reportedCost"        DOUBLE PRECISION,
    "onDependencyFailure" TEXT NOT NULL DEFAULT 'cancel',
    "cancelRequested"     BOOLEAN NOT NULL DEFAULT FALSE,
    "runAt"               TEXT COLLATE "C",
    "retryDelaySeconds"   BIGINT NOT NULL DEFAULT 0,
    "idempotencyKey"      TEXT COLLATE "C",
    "reportedError"       TEXT
);
CREATE INDEX "Task_status_venture_idx" ON "Task" (status, "ventureId");
CREATE INDEX "Task_created_idx" ON "Task" ("createdAt", id);
CREATE INDEX "Task_venture_created_idx" ON "Task" ("ventureId", "createdAt", id);
CREATE INDEX "Task_completed_age_idx" ON "Task" ("completedAt") WHERE status = 'completed';
CREATE INDEX "Task_failed_age_idx" ON "Task" ("updatedAt") WHERE status IN ('failed', 'cancelled');
CREATE UNIQUE INDEX "Task_idempotency_idx" ON "Task" ("ventureId", "idempotencyKey")
    WHERE "idempotencyKey" IS NOT NULL;

CREATE TABLE "Agent" (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    model           TEXT NOT NULL,
    "currentTask"   TEXT,
    "tokensUsed"    BIGINT NOT NULL DEFAULT 0,
    "maxTokens"     BIGINT NOT NULL DEFAULT 0,
    "sessionsCount" BIGINT NOT NULL DEFAULT 0,
    "lastActiveAt"  TEXT COLLATE "C" NOT NULL,
    "createdAt"     TEXT COLLATE "C" NOT NULL,
    "updatedAt"     TEXT COLLATE "C" NOT NULL
);

-- `seq` stands in for SQLite's rowid: the order the persister appended activities in,
-- which is the order they happened. Newest first is `seq` descending.
CREATE TABLE "Activity" (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            TEXT COLLATE "C" PRIMARY KEY,
    type          TEXT NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT,
    "ventureId"   TEXT COLLATE "C",
    "taskId"      TEXT COLLATE "C",
    "agentId"     TEXT COLLATE "C",
    "createdAt"   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX "Activity_type_idx" ON "Activity" (type, seq);
CREATE INDEX "Activity_ventureId_idx" ON "Activity" ("ventureId", seq);
CREATE INDEX "Activity_taskId_idx" ON "Activity" ("taskId", seq);
CREATE INDEX "Activity_agentId_idx" ON "Activity" ("agentId", seq);

CREATE TABLE "TaskAttempt" (
    "taskId"     TEXT COLLATE "C" NOT NULL,
    attempt      BIGINT NOT NULL,
    "agentId"    TEXT NOT NULL,
    "claimedAt"  TEXT COLLATE "C" NOT NULL,
    "endedAt"    TEXT COLLATE "C",
    outcome      TEXT NOT NULL,
    error        TEXT,
    "actualCost" DOUBLE PRECISION,
    "tokensUsed" BIGINT,
    PRIMARY KEY ("taskId", attempt)
);

CREATE TABLE "TaskDependency" (
    "taskId"      TEXT COLLATE "C" NOT NULL,
    "dependsOnId" TEXT COLLATE "C" NOT NULL,
    position      BIGINT NOT NULL,
    PRIMARY KEY ("taskId", "dependsOnId")
);
CREATE INDEX "TaskDependency_dependsOn_idx" ON "TaskDependency" ("dependsOnId");
