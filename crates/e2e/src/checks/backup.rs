//! Barman: `check` all OK, `replication-status` lists both streams, a WAL switch is archived, and
//! a base backup (`backup --wait`, the WAL forced along) ends DONE and is listed.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::target::Command;
use crate::{ensure, fail, pending, wait_for, Ctx, Failure, Node, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let c = &cx.cluster.config;
    let server = c.barman.server.as_str();
    let check = wait_for(
        &format!("barman check {server}: every line OK"),
        Duration::from_secs(120),
        || {
            let out = backup.barman(&["check", server])?;
            let text = out.combined();
            if out.success() && not_ok_lines(&text).is_empty() {
                return Ok(Some(text));
            }
            pending(not_ok_lines(&text).join("\n"))
        },
    )?;
    cx.note(format!(
        "barman check: {} lines OK",
        check.lines().filter(|l| l.contains(": OK")).count()
    ));
    let out = backup.barman(&["replication-status", server])?;
    ensure(
        out.success(),
        "barman replication-status failed",
        out.combined(),
    )?;
    let repl_user = c.replication.user.as_str();
    ensure(
        out.stdout.contains(repl_user) && out.stdout.contains("barman_receive_wal"),
        format!("barman replication-status {server} does not list both {repl_user} and barman_receive_wal"),
        out.combined(),
    )?;
    cx.note(format!(
        "replication-status lists {repl_user} and barman_receive_wal"
    ));
    switch_wal(cx, primary, backup, server)?;
    let id = backup_with_wal_switches(primary, backup, server)?;
    let show = backup.barman(&["show-backup", server, &id])?.combined();
    let status = backup_status(&show);
    ensure(
        status == "DONE",
        format!("backup {id} ends {status}, not DONE"),
        &show,
    )?;
    let list = backup.barman(&["list-backup", server])?.combined();
    let Some(line) = list.lines().find(|l| l.contains(&id)) else {
        return fail(format!("barman list-backup does not show {id}"), list);
    };
    cx.note(format!("backup {id} DONE; list-backup: {line}"));
    Ok(())
}

/// Lines of `barman check` that are neither its header nor OK.
fn not_ok_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with("Server ") && !l.contains(": OK"))
        .collect()
}

/// Barman's role is deliberately not a superuser, so no `--force` (which needs CHECKPOINT): write
/// something first so that the current WAL file has content to close.
fn switch_wal(cx: &Ctx, primary: &Node, backup: &Node, server: &str) -> Result<()> {
    primary.sql(
        "postgres",
        "select pg_create_restore_point('e2e switch-wal')",
    )?;
    let out = backup.barman(&["switch-wal", "--archive", "--archive-timeout", "90", server])?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("barman switch-wal --archive {server} failed"),
        &text,
    )?;
    let lower = text.to_lowercase();
    ensure(
        lower.contains("archived") || lower.contains("processing xlog segments"),
        "switch-wal did not report an archived WAL",
        &text,
    )?;
    let line = text
        .lines()
        .find(|l| l.to_lowercase().contains("wal file"))
        .unwrap_or_default();
    cx.note(format!("switch-wal: {line}"));
    Ok(())
}

/// `backup --wait` waits for the backup's last WAL file; on an idle primary that file is only
/// closed by a WAL switch, which a real workload would do by itself: force one every 10 s while
/// the backup runs (bounded: 300 s inside the guest, 330 s for the command). Returns the id.
fn backup_with_wal_switches(primary: &Node, backup: &Node, server: &str) -> Result<String> {
    let argv = [
        "runuser", "-u", "barman", "--", "timeout", "300", "barman", "backup", "--wait", server,
    ];
    let cmd = Command::new(&argv).timeout(Duration::from_secs(330));
    let (tx, rx) = mpsc::channel();
    let out = thread::scope(|s| {
        let node = backup.clone();
        s.spawn(move || {
            let _ = tx.send(node.exec(&cmd));
        });
        let deadline = Instant::now() + Duration::from_secs(340);
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    primary.sql("postgres", "select pg_switch_wal()")?;
                }
                Err(_) => {
                    return fail(
                        format!("barman backup --wait {server} did not finish in 300 s"),
                        "",
                    )
                }
            }
        }
    })?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("barman backup --wait {server} failed"),
        &text,
    )?;
    backup_id(&text)
        .ok_or_else(|| Failure::new("cannot find the backup id in barman's output", text))
}

/// The first `base/YYYYMMDDTHHMMSS` id in barman's output.
fn backup_id(text: &str) -> Option<String> {
    text.match_indices("base/").find_map(|(i, _)| {
        let id = text.get(i + 5..i + 20)?;
        let b = id.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        (digits(0..8) && b[8] == b'T' && digits(9..15)).then(|| id.to_string())
    })
}

/// The `Status` field of `barman show-backup`.
fn backup_status(show: &str) -> String {
    show.lines()
        .find(|l| l.trim_start().starts_with("Status"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_barman_output() {
        let out = "Starting backup using postgres method for server master in /var/lib/barman/master/base/20261126T104821\nBackup start at LSN: 0/5000028";
        assert_eq!(backup_id(out).as_deref(), Some("20261126T104821"));
        assert_eq!(backup_id("base/2026112 nothing"), None);
        let show = "Backup 20261126T104821:\n  Server Name            : master\n  Status                 : DONE\n";
        assert_eq!(backup_status(show), "DONE");
        let check = "Server master:\n\tPostgreSQL: OK\n\tWAL archive: FAILED (please make sure WAL shipping is setup)\n";
        assert_eq!(
            not_ok_lines(check),
            ["\tWAL archive: FAILED (please make sure WAL shipping is setup)"]
        );
    }
}
