//! Drill 3: the backup server is powered off under load, then booted: archive_command failures
//! are retried without loss, receive-wal resumes, `barman check` is OK again, and Barman's WAL
//! archive has no gap from its first backup to the WAL of the last acknowledged commit, and a
//! recovery to latest with the product's own `pgnode restore --latest --keep` (on the backup
//! node, into its sandbox) holds every acknowledged ledger id; the copy is then discarded.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::archive;
use crate::checks::restore;
use crate::faults::{self, Clock};
use crate::text::flat;
use crate::{ensure, pending, wait_for, Ctx, LedgerReport, Node, Result};

/// The ledger's table in this drill.
const TABLE: &str = "e2e_fault_backup_down";

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "with the backup server off under load, archive_command fails and is retried; once it is back, receive-wal resumes, barman check is OK and Barman's WAL archive is gapless up to the last acknowledged commit and a recovery to latest (pgnode restore --latest) holds every acknowledged commit; 0 commits lost, every node healthy",
    );
    let hooks = faults::hooks(cx)?;
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let server = cx.cluster.config.barman.server.as_str().to_string();
    let load = faults::start_load(cx, TABLE, 20)?;
    let failed_before = failed_count(primary)?;
    faults::hook("power off the backup node", hooks.power_off(&backup.name))?;
    let undo = faults::Undo::power(hooks, &backup.name);
    faults::write_wal(primary, 32)?;
    wait_for(
        "archive_command to fail while the backup node is off",
        Duration::from_secs(60),
        || {
            let n = failed_count(primary)?;
            if n > failed_before {
                Ok(Some(()))
            } else {
                pending(format!("failed_count {n}"))
            }
        },
    )?;
    cx.note(format!(
        "{backup} off: archive_command failing (pg_stat_archiver.failed_count {} -> {})",
        failed_before,
        failed_count(primary)?
    ));
    let clock = Clock::start();
    faults::hook("boot the backup node", hooks.boot(&backup.name))?;
    undo.done();
    let report = load.finish(cx, false)?;
    // The WAL holding the last acknowledged commit is closed, so both paths must deliver it.
    let last = archive::close_and_archive(primary, faults::HEAL)?;
    wait_for("barman check to be OK again", faults::HEAL, || {
        let out = backup.barman(&["check", &server])?;
        if out.success() {
            Ok(Some(()))
        } else {
            pending(out.combined())
        }
    })?;
    let secs = clock.secs();
    cx.note(format!(
        "archiver caught up past {last}, barman check OK {secs:.1}s after boot"
    ));
    let n = archive::wait_gapless(backup, &server, &last, faults::HEAL)?;
    cx.note(format!(
        "Barman's archive: {n} consecutive WAL files from the first backup's to {last}, no gap"
    ));
    restore_latest_has_every_ack(cx, backup, &report)?;
    faults::all_healthy(cx, faults::HEAL)?;
    faults::table_line(
        cx,
        "backup server down under load",
        "nothing by hand: PostgreSQL retries archive_command, Barman's cron restarts receive-wal",
        "archive_command failed while down; archiver and barman check OK after boot; Barman's WAL gapless up to the last acknowledged commit; pgnode restore --latest holds every acknowledged commit",
        Some(secs),
    );
    Ok(())
}

/// `pgnode restore --latest --keep` on the backup node (every WAL file Barman archived, into
/// its sandbox), then every acknowledged ledger id must be in the copy; `--discard` removes it
/// (also when this fails half-way).
fn restore_latest_has_every_ack(cx: &Ctx, backup: &Node, report: &LedgerReport) -> Result<()> {
    backup.pgnode(&["restore", "--discard"])?;
    let _discard = Discard(backup);
    let out = backup.pgnode(&["restore", "--latest", "--keep"])?;
    ensure(
        out.success() && out.stdout.contains("pgnode restore --discard"),
        "pgnode restore --latest --keep failed on the backup node",
        out.combined(),
    )?;
    let summary: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            [
                "  backup ",
                "  recovery ended ",
                "  end LSN ",
                "  durations ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    cx.note(format!(
        "pgnode restore --latest --keep: {}",
        flat(&summary.join("\n"))
    ));
    let got = restore::copy_sql(backup, &format!("select id from {TABLE} order by id"))?;
    ensure(
        got.success(),
        format!("cannot read {TABLE} in the restored copy"),
        got.combined(),
    )?;
    let present: BTreeSet<u64> = got
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let n = report.compare(&present, &format!("{backup} (restored copy)"), TABLE)?;
    let max = report.acked.last().map_or(0, |a| a.id);
    cx.note(format!(
        "restored copy: all {n} acknowledged ledger ids present (last acknowledged id {max}; {} rows in the copy)",
        present.len()
    ));
    let out = backup.pgnode(&["restore", "--discard"])?;
    ensure(
        out.success() && !backup.run(&["test", "-e", restore::DATA])?.success(),
        "pgnode restore --discard did not remove the restored copy",
        out.combined(),
    )?;
    cx.note("pgnode restore --discard: copy stopped and removed");
    Ok(())
}

/// Removes a kept copy when the drill ends, passed or not.
struct Discard<'a>(&'a Node);

impl Drop for Discard<'_> {
    fn drop(&mut self) {
        let _ = self.0.pgnode(&["restore", "--discard"]);
    }
}

fn failed_count(primary: &Node) -> Result<u64> {
    Ok(primary
        .sql("postgres", "select failed_count from pg_stat_archiver")?
        .parse()
        .unwrap_or(0))
}
