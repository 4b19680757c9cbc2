-- Leadership: one row, a lease with an epoch. A node becomes leader by taking the row when
-- its lease has lapsed, raising the epoch; every batch the leader commits first checks,
-- in its own transaction, that the row still holds its epoch and an unexpired lease.
CREATE TABLE "Leader" (
    name          TEXT PRIMARY KEY,
    epoch         BIGINT NOT NULL,
    holder        TEXT NOT NULL,
    "advertiseUrl" TEXT NOT NULL,
    "expiresAt"   TIMESTAMPTZ NOT NULL
);
INSERT INTO "Leader" (name, epoch, holder, "advertiseUrl", "expiresAt")
    VALUES ('scheduler', 0, '', '', '-infinity');
