//! The leader's lease: one row of `"Leader"` with an epoch. Taking it raises the epoch;
//! renewing extends it; `fence` is the check every batch makes inside its own transaction,
//! so a node whose lease lapsed or was taken can never commit again.

use std::time::Duration;

use postgres::{Client, GenericClient};

use crate::store::StoreError;

/// The one row's key.
const ROW: &str = "scheduler";

/// The lease this node holds: its epoch, and how long each renewal extends it.
#[derive(Debug, Clone)]
pub struct Lease {
    pub epoch: i64,
    pub length: Duration,
}

/// Who leads, as the row says.
#[derive(Debug, Clone)]
pub struct LeaderRow {
    pub epoch: i64,
    pub holder: String,
    pub advertise_url: String,
    /// The lease has not expired (by the database's clock).
    pub live: bool,
}

impl Lease {
    /// Takes the lease if it has lapsed: the new epoch, or `None` while another holds it.
    /// The database's clock decides, so the nodes' clocks need not agree. The takeover
    /// locks the row `FOR UPDATE`, which waits for the old leader's batches in flight (each
    /// holds it `FOR KEY SHARE`), so the new leader loads whatever they committed.
    pub fn try_acquire(
        client: &mut Client,
        holder: &str,
        advertise_url: &str,
        length: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let context = "taking the leader's lease";
        // A cheap look first: a standby polls every second, and must not lock the row
        // (and so hold the leader's batches) while the lease is live.
        let lapsed: bool = client
            .query_one(r#"SELECT "expiresAt" <= clock_timestamp() FROM "Leader" WHERE name = $1"#, &[&ROW])
            .map_err(StoreError::postgres(context))?
            .get(0);
        if !lapsed {
            return Ok(None);
        }
        let mut tx = client.transaction().map_err(StoreError::postgres(context))?;
        tx.execute(r#"SELECT 1 FROM "Leader" WHERE name = $1 FOR UPDATE"#, &[&ROW])
            .map_err(StoreError::postgres(context))?;
        let row = tx
            .query_opt(
                r#"UPDATE "Leader" SET epoch = epoch + 1, holder = $2, "advertiseUrl" = $3,
                    "expiresAt" = clock_timestamp() + make_interval(secs => $4)
                 WHERE name = $1 AND "expiresAt" <= clock_timestamp() RETURNING epoch"#,
                &[&ROW, &holder, &advertise_url, &length.as_secs_f64()],
            )
            .map_err(StoreError::postgres(context))?;
        tx.commit().map_err(StoreError::postgres(context))?;
        Ok(row.map(|row| Lease { epoch: row.get(0), length }))
    }

    /// Extends the lease from now. `false`: it lapsed or another node holds it now; this
    /// node is no longer the leader and must not act as one.
    pub fn renew(&self, client: &mut Client) -> Result<bool, StoreError> {
        let n = client
            .execute(
                r#"UPDATE "Leader" SET "expiresAt" = clock_timestamp() + make_interval(secs => $3)
                 WHERE name = $1 AND epoch = $2 AND "expiresAt" > clock_timestamp()"#,
                &[&ROW, &self.epoch, &self.length.as_secs_f64()],
            )
            .map_err(StoreError::postgres("renewing the leader's lease"))?;
        Ok(n == 1)
    }

    /// Ends the lease at once, so a standby takes over without waiting for it to lapse.
    pub fn release(&self, client: &mut Client) -> Result<(), StoreError> {
        client
            .execute(
                r#"UPDATE "Leader" SET "expiresAt" = '-infinity' WHERE name = $1 AND epoch = $2"#,
                &[&ROW, &self.epoch],
            )
            .map_err(StoreError::postgres("releasing the leader's lease"))?;
        Ok(())
    }

    /// The fence: inside the caller's transaction, checks that this lease still holds and
    /// locks the row `FOR KEY SHARE`, so a takeover (`FOR UPDATE`) waits until this
    /// transaction ends and the new leader loads whatever it committed, while renewals (an
    /// update of no key column) go on. Fails with `StoreError::Fenced` otherwise.
    pub fn fence(&self, tx: &mut impl GenericClient) -> Result<(), StoreError> {
        let held = tx
            .query_opt(
                r#"SELECT 1 FROM "Leader" WHERE name = $1 AND epoch = $2 AND "expiresAt" > clock_timestamp()
                 FOR KEY SHARE"#,
                &[&ROW, &self.epoch],
            )
            .map_err(StoreError::postgres("checking the leader's lease"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced { epoch: self.epoch }),
        }
    }
}

/// The row as it stands, or `None` before the schema has it.
pub fn current(client: &mut Client) -> Result<Option<LeaderRow>, StoreError> {
    if client
        .query_one(r#"SELECT to_regclass('"Leader"') IS NULL"#, &[])
        .map_err(StoreError::postgres("reading the schema"))?
        .get(0)
    {
        return Ok(None);
    }
    let row = client
        .query_opt(
            r#"SELECT epoch, holder, "advertiseUrl", "expiresAt" > clock_timestamp() FROM "Leader" WHERE name = $1"#,
            &[&ROW],
        )
        .map_err(StoreError::postgres("reading the leader's lease"))?;
    Ok(row.map(|row| LeaderRow { epoch: row.get(0), holder: row.get(1), advertise_url: row.get(2), live: row.get(3) }))
}
