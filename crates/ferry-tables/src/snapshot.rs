//! One consistent view of the database for a whole export.
//!
//! The leader opens a `REPEATABLE READ READ ONLY` transaction and exports its snapshot
//! (`pg_export_snapshot()`); every worker connection opens the same kind of transaction and
//! adopts it (`SET TRANSACTION SNAPSHOT`) before reading anything, so all of them see exactly the
//! rows committed when the leader began, whatever is written meanwhile. The snapshot lives as
//! long as the leader's transaction: the leader is held open until the last worker has adopted
//! it. The snapshot id, the server's version and its WAL position go in the manifest.
//!
//! A standby cannot export a snapshot (PostgreSQL refuses during recovery), and ferry will not
//! read one table through connections that see different moments: on a standby the export is
//! refused, named ([`crate::TablesError::Standby`]).

use crate::{Result, TablesError};
use tokio_postgres::Client;

/// The leader's snapshot, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// What `SET TRANSACTION SNAPSHOT` takes (`00000003-0000001B-1`).
    pub id: String,
    /// `server_version` (`15.18 (Debian 15.18-0+deb12u1)`).
    pub server_version: String,
    /// `pg_current_wal_lsn()` when the snapshot was taken (`0/1A2B3C4`).
    pub lsn: String,
    /// `pg_current_snapshot()`: which transactions the snapshot sees (`xmin:xmax:xip,…`), so
    /// `verify --sample` can tell a row the export saw from one written since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

/// The leader's open transaction, holding the snapshot for the workers.
pub struct Snapshot {
    client: Client,
    pub info: SnapshotInfo,
}

async fn run(client: &Client, what: &str, sql: &str) -> Result<()> {
    client.batch_execute(sql).await.map_err(|source| TablesError::Query { what: what.to_string(), source })
}

impl Snapshot {
    /// Begins the leader's transaction on `client`, locks `tables` against what does not
    /// respect a snapshot (TRUNCATE, VACUUM FULL, CLUSTER, a rewriting ALTER TABLE: each waits
    /// for the export, as with pg_dump), then exports its snapshot. The server must be
    /// PostgreSQL 14 or later (exact `extract(epoch …)`, TID range scans) and store text as UTF-8
    /// (the SQL figures work on the server's bytes, ferry's on UTF-8).
    pub async fn begin(client: Client, tables: &[crate::schema::Table]) -> Result<Snapshot> {
        let facts = client
            .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_encoding')", &[])
            .await
            .map_err(|source| TablesError::Query { what: "ask the server's version and encoding".into(), source })?;
        let (version, encoding): (i32, String) = (facts.get(0), facts.get(1));
        if version < 140000 {
            return Err(TablesError::Version { version_num: version });
        }
        if encoding != "UTF8" {
            return Err(TablesError::Encoding { encoding });
        }
        let standby: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|source| TablesError::Query { what: "ask whether the server is a standby".into(), source })?
            .get(0);
        if standby {
            return Err(TablesError::Standby);
        }
        quiet_timeouts(&client).await?;
        run(&client, "begin the export's transaction", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        if !tables.is_empty() {
            let names: Vec<String> = tables.iter().map(|t| crate::fingerprint::qualified(&t.name)).collect();
            run(&client, "lock the exported tables", &format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", "))).await?;
        }
        let row = client
            .query_one(
                "SELECT pg_export_snapshot(), current_setting('server_version'), pg_current_wal_lsn()::text, pg_current_snapshot()::text",
                &[],
            )
            .await
            .map_err(|source| TablesError::Query { what: "export the snapshot".into(), source })?;
        let info = SnapshotInfo { id: row.get(0), server_version: row.get(1), lsn: row.get(2), visibility: Some(row.get(3)) };
        Ok(Snapshot { client, info })
    }

    /// The leader's connection, inside the snapshot's transaction.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Puts worker connection `client` in a transaction that sees exactly the snapshot.
    pub async fn adopt(&self, client: &Client) -> Result<()> {
        adopt(client, &self.info.id).await
    }

    /// Which database this is: the cluster's system identifier and the database's oid (`None`
    /// where the role may not read the cluster's control data). A resumed export checks it.
    pub async fn database(&self) -> Option<String> {
        database_of(&self.client).await
    }

    /// Ends the leader's transaction (the snapshot can no longer be adopted).
    pub async fn finish(self) -> Result<()> {
        run(&self.client, "end the export's transaction", "COMMIT").await
    }
}

/// Puts `client` in a `REPEATABLE READ READ ONLY` transaction that sees snapshot `id`, while the
/// transaction that exported it is open.
pub async fn adopt(client: &Client, id: &str) -> Result<()> {
    // The id is the server's own text; quoted as a literal all the same.
    let id = id.replace('\'', "''");
    quiet_timeouts(client).await?;
    run(client, "begin a worker's transaction", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    run(client, "adopt the export's snapshot", &format!("SET TRANSACTION SNAPSHOT '{id}'")).await
}

/// No statement or idle-transaction timeout of the server's cuts an export short (a worker's
/// COPY may take long, and the leader waits in its transaction), as pg_dump sets.
async fn quiet_timeouts(client: &Client) -> Result<()> {
    run(
        client,
        "turn off the session's timeouts",
        "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET lock_timeout = 0",
    )
    .await
}

/// Which database `client` reaches: the cluster's system identifier and the database's oid
/// (`7716726094165751954/16384`), the same whatever host name or port reaches it; `None` where
/// the server does not say (no right to `pg_control_system()`).
pub async fn database_of(client: &Client) -> Option<String> {
    let sql = "SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text";
    client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

/// Which transactions a snapshot sees: `pg_current_snapshot()`'s `xmin:xmax:xip,…` (64-bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Visibility {
    /// Parses `pg_current_snapshot()::text`.
    pub fn parse(text: &str) -> Option<Visibility> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list.split(',').map(|x| x.parse().ok()).collect::<Option<Vec<u64>>>()?,
        };
        (parts.next().is_none() && xmin <= xmax).then_some(Visibility { xmin, xmax, xip })
    }

    /// Whether the snapshot sees what transaction `xid` (full, 64-bit) wrote.
    pub fn sees(&self, xid: u64) -> bool {
        // 0, 1 and 2 are invalid, bootstrap and frozen: older than any snapshot.
        xid < 3 || xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }

    /// The first transaction id the snapshot did not see started (its `xmax`).
    pub fn xmax(&self) -> u64 {
        self.xmax
    }

    /// The oldest transaction still in progress when the snapshot was taken (its `xmin`): every
    /// one before it was seen.
    pub fn xmin(&self) -> u64 {
        self.xmin
    }

    /// Whether a row by `xid` that the snapshot sees may still not have been seen: a
    /// subtransaction's id is never in the list of those in progress.
    pub(crate) fn in_window(&self, xid: u64) -> bool {
        xid >= self.xmin && xid < self.xmax
    }
}

/// The full transaction id of a row's 32-bit `xmin`, given the full counter now (`next`): the
/// latest id at or before `next` with those low 32 bits.
pub fn widen(xmin: u32, next: u64) -> u64 {
    if xmin < 3 {
        return xmin as u64;
    }
    let back = (next as u32).wrapping_sub(xmin) as u64;
    next.checked_sub(back).unwrap_or(xmin as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sees_what_committed_before_it() {
        let v = Visibility::parse("100:110:103,107").unwrap();
        assert!(v.sees(2) && v.sees(99) && v.sees(100) && v.sees(104));
        assert!(!v.sees(103) && !v.sees(107) && !v.sees(110) && !v.sees(5000));
        assert_eq!(Visibility::parse("5:5:").unwrap().xip, Vec::<u64>::new());
        assert!(Visibility::parse("9:5:").is_none() && Visibility::parse("a:b:").is_none() && Visibility::parse("1:2").is_none());
    }

    #[test]
    fn a_32_bit_xid_widens_to_the_latest_full_id_with_its_bits() {
        let next = (3u64 << 32) + 10;
        assert_eq!(widen(5, next), (3 << 32) + 5);
        assert_eq!(widen(u32::MAX - 1, next), (2u64 << 32) + (u32::MAX - 1) as u64);
        assert_eq!(widen(700, 1000), 700);
        assert_eq!(widen(2, next), 2);
    }
}
