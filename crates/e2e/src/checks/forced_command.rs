//! A compromised primary cannot destroy backups. Promise: the SSH key the primary's postgres
//! account uses for archive_command runs nothing on the backup node but `barman put-wal SERVER`
//! (and its `--test` handshake): every other command is refused, the backups are untouched,
//! and archiving through that key still works (a WAL switch is archived by archive_command).

use std::time::Duration;

use crate::{ensure, pending, wait_for, Ctx, Node, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let server = cx.cluster.config.barman.server.clone();
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let dest = format!("barman@{}", backup.address);
    let base = format!("/var/lib/barman/{server}/base");
    let backups_before = backup.ok(&["ls", &base])?;
    let hostile = [
        format!("rm -rf /var/lib/barman/{server}"),
        format!("barman delete {server} oldest"),
        format!("barman put-wal {server}; rm -rf /var/lib/barman"),
        format!("barman put-wal {server} && id"),
        "barman put-wal other-server".to_string(),
        "sh -c id".to_string(),
        "cat /var/lib/barman/.pgpass".to_string(),
    ];
    for cmd in &hostile {
        let out = primary.run_as("postgres", &["ssh", "-T", &dest, cmd])?;
        refused(&out, cmd)?;
    }
    // No command at all: an interactive session.
    let out = primary.run_as("postgres", &["ssh", "-T", &dest])?;
    refused(&out, "(no command: a login shell)")?;
    cx.note(format!(
        "{} commands through the archive key refused by the forced command (rm -rf, barman delete, \
         chained commands, another server, a shell, reading .pgpass)",
        hostile.len() + 1
    ));
    let backups_after = backup.ok(&["ls", &base])?;
    ensure(
        backups_after == backups_before,
        "the backups changed",
        format!("before:\n{backups_before}\nafter:\n{backups_after}"),
    )?;
    let addr = backup.address.to_string();
    let test = primary.run_as(
        "postgres",
        &["barman-wal-archive", "--test", &addr, &server, "DUMMY"],
    )?;
    ensure(
        test.success(),
        "barman-wal-archive --test fails through the forced command",
        test.combined(),
    )?;
    cx.note(format!("barman-wal-archive --test: {}", test.stdout.trim()));
    archived(cx, primary)
}

fn refused(out: &crate::Output, cmd: &str) -> Result<()> {
    ensure(
        !out.success() && out.stderr.contains("pgnode: refused"),
        format!("`{cmd}` through the archive key was not refused by the forced command"),
        out.combined(),
    )
}

/// A WAL switch on the primary is archived by archive_command (the only user of the key).
fn archived(cx: &Ctx, primary: &Node) -> Result<()> {
    primary.sql(
        "postgres",
        "SELECT pg_create_restore_point('pgnode forced-command')",
    )?;
    let wal = primary.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")?;
    wait_for(
        &format!("archive_command to archive {wal}"),
        Duration::from_secs(120),
        || {
            let last = primary.sql(
                "postgres",
                "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver",
            )?;
            let name = last.split(' ').next().unwrap_or_default();
            // File names sort in WAL order (same timeline).
            if name >= wal.as_str() {
                Ok(Some(()))
            } else {
                pending(format!(
                    "pg_stat_archiver: last_archived_wal failed_count = {last}"
                ))
            }
        },
    )?;
    cx.note(format!(
        "archiving still works: {wal} archived through the key"
    ));
    Ok(())
}
