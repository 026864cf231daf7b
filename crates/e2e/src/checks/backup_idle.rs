//! A scheduled backup finishes on an idle primary. Promise: the exact command of the nightly
//! cron entry (`barman backup --wait`) returns, with the new backup DONE, well within its wait
//! timeout although nothing writes on the primary. Without `archive_timeout` the backup's last
//! WAL file is never closed on an idle server and Barman 3.13 with PostgreSQL 17 waits forever.

use std::time::Instant;

use crate::{ensure, fail, Ctx, Result};

/// Bound on the whole `backup --wait` (Barman's own timeout, so the command ends by itself).
const WAIT_TIMEOUT_S: u64 = 300;

pub fn run(cx: &mut Ctx) -> Result<()> {
    let server = cx.cluster.config.barman.server.clone();
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let cron = backup.file("/etc/cron.d/pgnode-barman")?;
    ensure(
        cron.contains(&format!("backup --wait --wait-timeout 3600 {server}")),
        "the nightly cron entry does not run `barman backup --wait`",
        &cron,
    )?;
    let timeout = primary.sql("postgres", "SHOW archive_timeout")?;
    ensure(
        timeout != "0",
        "archive_timeout is off on the primary: an idle primary never closes a backup's last WAL file",
        &timeout,
    )?;
    // Idle: no client session other than replication and this one writes on the primary.
    let busy = primary.sql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND pid <> pg_backend_pid() AND state <> 'idle'",
    )?;
    ensure(busy == "0", "the primary is not idle", &busy)?;
    let lsn_before = primary.sql("postgres", "SELECT pg_current_wal_lsn()")?;
    let before = backup_ids(cx, &server)?;
    let t0 = Instant::now();
    let wait = WAIT_TIMEOUT_S.to_string();
    let out = backup.barman(&["backup", "--wait", "--wait-timeout", &wait, &server])?;
    let secs = t0.elapsed().as_secs_f64();
    ensure(
        out.success(),
        format!("barman backup --wait failed after {secs:.0}s"),
        out.combined(),
    )?;
    let after = backup_ids(cx, &server)?;
    let new: Vec<&(String, String)> = after.iter().filter(|b| !before.contains(b)).collect();
    match new.as_slice() {
        [(id, status)] if status == "DONE" => {
            cx.note(format!(
                "idle primary (WAL at {lsn_before}, archive_timeout {timeout}): \
                 `barman backup --wait` returned in {secs:.1}s, backup {id} DONE"
            ));
            Ok(())
        }
        _ => fail(
            format!("no new DONE backup after barman backup --wait ({secs:.0}s)"),
            format!("{new:?}\n{}", out.combined()),
        ),
    }
}

/// (backup id, status) of every backup of `server`.
fn backup_ids(cx: &Ctx, server: &str) -> Result<Vec<(String, String)>> {
    let out = cx
        .cluster
        .backup()
        .barman(&["-f", "json", "list-backups", server])?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| crate::Failure::new(format!("barman list-backups: {e}"), out.combined()))?;
    Ok(v[server]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|b| {
                    let s = |k: &str| b[k].as_str().unwrap_or_default().to_string();
                    (s("backup_id"), s("status"))
                })
                .collect()
        })
        .unwrap_or_default())
}
