//! Barman following the primary after a switchover or failover: which timeline the primary
//! and each backup are on, the new timeline's history file in the archive, and the duplicate
//! partial segment a change of primary leaves in Barman's `errors/`.

use std::time::Duration;

use pgnode_core::ctx::BARMAN_HOME;
use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, system, wait, Ctx, Error, Result};

use crate::barman::{backups, barman, query_master, Backup};

/// The primary's current timeline (from its current WAL file name).
pub(crate) fn primary_timeline(ctx: &Ctx) -> Result<u32> {
    let hex = pg::scalar(&query_master(
        ctx,
        "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8);",
    ))?;
    u32::from_str_radix(&hex, 16).map_err(|e| Error::Parse {
        what: "the primary's WAL file name".into(),
        detail: format!("{hex}: {e}"),
    })
}

/// The timeline a backup was taken on: `timeline=` in its backup.info where Barman 3.4 keeps it
/// (`base/ID/backup.info`), else what `barman show-backup` says (Barman >= 3.11 keeps the
/// metadata elsewhere, and its layout is Barman's business).
fn backup_timeline(ctx: &Ctx, id: &str) -> Option<u32> {
    let server = ctx.cluster.barman.server.as_str();
    let p = ctx.path(std::path::Path::new(&format!(
        "{BARMAN_HOME}/{server}/base/{id}/backup.info"
    )));
    if let Some(tl) = std::fs::read_to_string(p)
        .ok()
        .and_then(|t| parse_backup_timeline(&t))
    {
        return Some(tl);
    }
    let out = barman(&["show-backup", server, id]).probe().ok()?;
    parse_show_backup_timeline(&out.stdout)
}

/// `Timeline : N` from `barman show-backup` output.
pub fn parse_show_backup_timeline(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Timeline").then(|| v.trim().parse().ok())?
    })
}

/// `timeline=N` from a backup.info file.
pub fn parse_backup_timeline(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("timeline="))
        .and_then(|v| v.trim().parse().ok())
}

/// Why there is no DONE backup of the primary's current timeline, if there is none. After a
/// switchover or failover the older backups belong to the old primary's timeline: a backup of
/// the new primary is what a restore of recent data starts from.
pub(crate) fn no_current_backup(ctx: &Ctx) -> Result<Option<String>> {
    let b = backups(ctx)?;
    let done: Vec<&Backup> = b.iter().filter(|b| b.status == "DONE").collect();
    if done.is_empty() {
        return Ok(Some(format!("no DONE backup ({} listed)", b.len())));
    }
    let tl = primary_timeline(ctx)?;
    if done.iter().any(|b| backup_timeline(ctx, &b.id) == Some(tl)) {
        return Ok(None);
    }
    Ok(Some(format!(
        "no DONE backup of the primary's timeline {tl} (the primary changed)"
    )))
}

/// The primary's timeline history file (from timeline 2 on) is in Barman's archive: without
/// it, a recovery cannot follow the switch to the new timeline.
pub fn history_archived(ctx: &Ctx) -> Step<'_> {
    let server = ctx.cluster.barman.server.as_str();
    let missing = move || -> Result<Option<String>> {
        let tl = primary_timeline(ctx)?;
        if tl < 2 {
            return Ok(None);
        }
        let name = format!("{tl:08X}.history");
        let p = ctx.path(std::path::Path::new(&format!(
            "{BARMAN_HOME}/{server}/wals/{name}"
        )));
        Ok((!p.exists()).then(|| format!("{name} is not in {}", p.display())))
    };
    Step::change(
        "the primary's timeline history file is archived",
        move || Ok(missing()?.map_or(Check::Ok, Check::Needs)),
        move || {
            // archive_command ships the history file first; a WAL switch makes the archiver
            // run, and barman cron moves incoming files into the archive.
            query_master(ctx, "SELECT pg_switch_wal();").run()?;
            wait::until(
                "the timeline history file to reach Barman's archive",
                Duration::from_secs(180),
                Duration::from_secs(3),
                || {
                    barman(&["-q", "cron"]).discard_output().run()?;
                    Ok(missing()?.map_or(Ok(()), Err))
                },
            )
        },
    )
}

/// Whether an entry of Barman's errors directory is the benign duplicate a change of primary
/// leaves: the old timeline's last, partial segment reaches Barman twice (from pg_receivewal
/// and from the new primary's archive_command) and the second copy lands in `errors/` as
/// `NAME.partial.TIMESTAMP.duplicate`, which fails `barman check` ("archiver errors").
pub fn is_partial_duplicate(name: &str) -> bool {
    name.ends_with(".duplicate") && name.contains(".partial.")
}

/// No partial-segment duplicates left in Barman's errors directory: they are moved (never
/// deleted) to `errors.pgnode-set-aside/` beside it. Any other error file stays for a human.
pub fn partial_duplicates_set_aside(ctx: &Ctx) -> Step<'_> {
    let server = ctx.cluster.barman.server.as_str();
    let dir = ctx.path(std::path::Path::new(&format!(
        "{BARMAN_HOME}/{server}/errors"
    )));
    let aside = dir.with_file_name("errors.pgnode-set-aside");
    let found = {
        let dir = dir.clone();
        move || -> Vec<String> {
            std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| is_partial_duplicate(n))
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    let f2 = found.clone();
    Step::change(
        "no duplicate partial WAL segment in Barman's errors (left by a change of primary)",
        move || {
            let f = found();
            Ok(if f.is_empty() {
                Check::Ok
            } else {
                Check::Needs(f.join(", "))
            })
        },
        move || {
            std::fs::create_dir_all(&aside).map_err(|source| Error::Write {
                path: aside.clone(),
                source,
            })?;
            let (u, g) = system::ids(&ctx.root, "barman", "barman")?;
            let _ = std::os::unix::fs::chown(&aside, Some(u), Some(g));
            for n in f2() {
                std::fs::rename(dir.join(&n), aside.join(&n)).map_err(|source| Error::Write {
                    path: dir.join(&n),
                    source,
                })?;
                eprintln!(
                    "pgnode: set aside {n} (a duplicate partial segment) in {}",
                    aside.display()
                );
            }
            Ok(())
        },
    )
}
