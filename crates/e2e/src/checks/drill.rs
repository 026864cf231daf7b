//! The restore drill: it passes on a healthy cluster and `pgnode status` on the backup node shows
//! it, with the passing backup kept (`barman keep`); after bytes of the newest backup are flipped
//! the next drill fails and status fails naming it; a fresh backup and drill make everything
//! healthy again (later checks need that), and the corrupted backup is deleted.

use std::time::Duration;

use crate::text::{flat, tail};
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Output, Result};

/// `pgnode restore --drill` on the backup node.
pub fn drill(backup: &Node) -> Result<Output> {
    backup.pgnode(&["restore", "--drill"])
}

/// The backup id a drill's report names (`... (backup 20261126T112327, ...`).
pub fn drilled_backup(report: &str) -> Option<String> {
    report
        .lines()
        .find(|l| l.starts_with("restore drill "))?
        .split("(backup ")
        .nth(1)?
        .get(..15)
        .map(String::from)
}

/// Takes a base backup (`barman backup [OPTION...]`), closes its last WAL file and waits for
/// DONE; returns its id.
pub fn fresh_backup(primary: &Node, backup: &Node, server: &str, opts: &[&str]) -> Result<String> {
    // A fast checkpoint: a spread one after the check's writes takes minutes, and the
    // checkpoint mode is not what these checks are about.
    let mut args = vec!["backup", "--immediate-checkpoint"];
    args.extend(opts);
    args.push(server);
    let out = backup.barman(&args)?;
    ensure(
        out.success(),
        format!("barman {} failed", args.join(" ")),
        out.combined(),
    )?;
    let text = out.combined();
    let Some(id) = text
        .split("base/")
        .skip(1)
        .map(|s| s.get(..15).unwrap_or(""))
        .find(|s| s.len() == 15 && s.as_bytes()[8] == b'T')
    else {
        return fail("cannot find the backup id in barman's output", text);
    };
    let id = id.to_string();
    primary.sql("postgres", "select pg_switch_wal()")?;
    wait_for(
        &format!("backup {id} to be DONE"),
        Duration::from_secs(300),
        || {
            let show = backup.barman(&["show-backup", server, &id])?.combined();
            if show
                .lines()
                .any(|l| l.trim_start().starts_with("Status") && l.contains("DONE"))
            {
                return Ok(Some(()));
            }
            backup.barman(&["-q", "cron"])?;
            pending(show)
        },
    )?;
    Ok(id)
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let server = cx.cluster.config.barman.server.as_str();
    let out = drill(backup)?;
    ensure(
        out.success(),
        "the restore drill failed on a healthy cluster",
        out.combined(),
    )?;
    for c in [
        "restore",
        "catalog indexes",
        "heartbeat",
        "barman verify-backup",
    ] {
        ensure(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("ok  {c}"))),
            format!("the drill did not pass its '{c}' check"),
            out.combined(),
        )?;
    }
    // For an incremental backup Barman keeps the full backup its chain starts from.
    let passed = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("kept backup "))
        .and_then(|l| l.get(..15))
        .unwrap_or_default()
        .to_string();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("ok  heartbeat") || l.contains("ok  catalog"))
        .collect();
    cx.note(format!("drill: {}", flat(&lines.join("\n"))));
    let status = backup.pgnode(&["status"])?;
    ensure(
        status.success(),
        "pgnode status on the backup node fails after a passing drill",
        status.combined(),
    )?;
    let line = status_line(&status.stdout);
    ensure(
        line.contains("restore drill") && line.contains(" OK "),
        "pgnode status does not show the passing drill",
        status.combined(),
    )?;
    cx.note(format!("status: {}", flat(&line)));
    let keep = backup
        .barman(&["keep", "--status", server, &passed])?
        .combined();
    ensure(
        keep.to_lowercase().contains("full"),
        format!("backup {passed} that passed the drill is not kept"),
        &keep,
    )?;
    cx.note(format!(
        "backup {passed} that passed is kept: {}",
        flat(&keep)
    ));
    let id = corrupt_newest(cx, backup, server)?;
    let out = drill(backup)?;
    ensure(
        !out.success() && out.stdout.contains("restore drill FAILED"),
        "the drill did not fail on a corrupted backup",
        out.combined(),
    )?;
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("FAILED"))
        .collect();
    cx.note(format!(
        "drill: {}",
        tail(&flat(&failed.join("\n")), 1)
            .chars()
            .take(200)
            .collect::<String>()
    ));
    let status = backup.pgnode(&["status"])?;
    let line = status_line(&status.stdout);
    ensure(
        !status.success() && line.contains("FAILED") && line.contains(&format!("backup {id}")),
        "pgnode status does not fail naming the failed drill and its backup",
        status.combined(),
    )?;
    cx.note(format!(
        "status fails: {}",
        line.chars().take(160).collect::<String>()
    ));
    let fresh = fresh_backup(primary, backup, server, &[])?;
    let out = drill(backup)?;
    ensure(
        out.success() && drilled_backup(&out.stdout).as_deref() == Some(fresh.as_str()),
        format!("the drill did not pass on the fresh backup {fresh}"),
        out.combined(),
    )?;
    backup.barman(&["keep", "--release", server, &id])?;
    let del = backup.barman(&["delete", server, &id])?;
    ensure(
        del.success(),
        format!("cannot delete the corrupted backup {id}"),
        del.combined(),
    )?;
    let status = backup.pgnode(&["status"])?;
    ensure(
        status.success(),
        "pgnode status still fails after a fresh backup and drill",
        status.combined(),
    )?;
    cx.note(format!(
        "fresh backup {fresh} passed the drill; corrupted {id} deleted; status healthy"
    ));
    Ok(())
}

fn status_line(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("restore drill"))
        .unwrap_or("")
        .to_string()
}

/// Flips 16 bytes of the largest file of template1 in the newest backup; returns its id.
pub(crate) fn corrupt_newest(cx: &Ctx, backup: &Node, server: &str) -> Result<String> {
    let base = format!("/var/lib/barman/{server}/base");
    let list = backup.ok(&["ls", "-1", &base])?;
    let mut ids: Vec<&str> = list
        .lines()
        .filter(|l| l.len() == 15 && l.as_bytes()[8] == b'T')
        .collect();
    ids.sort();
    let Some(id) = ids.last().map(|s| s.to_string()) else {
        return fail("no backup to corrupt", list);
    };
    let dir = format!("{base}/{id}/data/base/1");
    let files = backup.ok(&["ls", "-S", &dir])?;
    let Some(file) = files.lines().next().map(|f| format!("{dir}/{f}")) else {
        return fail("no data file in the newest backup", files);
    };
    let of = format!("of={file}");
    backup.ok(&[
        "dd",
        "if=/dev/urandom",
        &of,
        "bs=1",
        "count=16",
        "seek=4000",
        "conv=notrunc",
        "status=none",
    ])?;
    cx.note(format!("flipped 16 bytes at offset 4000 of {file}"));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drilled_backup() {
        let r =
            "  x\nrestore drill OK in 13.0s (backup 20261126T105806, restore point p); recorded";
        assert_eq!(drilled_backup(r).as_deref(), Some("20261126T105806"));
        assert_eq!(
            drilled_backup("restore drill FAILED in 1s (backup none, x"),
            None
        );
    }
}
