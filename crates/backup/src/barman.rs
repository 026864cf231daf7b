//! Barman steps and the parsing of Barman's output (`barman check`, `list-backups` as JSON).

use std::time::Duration;

use pgnode_core::ctx::BARMAN_HOME;
use pgnode_core::exec::Cmd;
use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, system, wait, Ctx, Error, Result};

/// One line of `barman check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub item: String,
    pub ok: bool,
    pub detail: String,
}

/// Parses `barman check SERVER` output ("\tname: OK (detail)" lines after "Server x:").
pub fn parse_check(out: &str) -> Vec<CheckLine> {
    out.lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .filter_map(|l| {
            // Item names hold no ": "; details may ("latest backup age: No available backups").
            let (item, rest) = l.trim().split_once(": ")?;
            let rest = rest.trim();
            let ok = rest == "OK" || rest.starts_with("OK ");
            Some(CheckLine {
                item: item.trim().to_string(),
                ok,
                detail: rest.to_string(),
            })
        })
        .collect()
}

/// A backup as listed by Barman.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: String,
    pub status: String,
    pub end_time: String,
    /// End of the backup in seconds since the epoch (DONE backups only).
    pub end_epoch: Option<u64>,
}

/// Parses `barman -f json list-backups SERVER`.
///
/// Errors: [`Error::Parse`] when it is not Barman's JSON.
pub fn parse_backups(server: &str, json: &str) -> Result<Vec<Backup>> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Parse {
        what: "barman list-backups".into(),
        detail: e.to_string(),
    })?;
    let list = v
        .get(server)
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    let s = |b: &serde_json::Value, k: &str| {
        b.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    Ok(list
        .iter()
        .map(|b| Backup {
            id: s(b, "backup_id"),
            status: s(b, "status"),
            end_time: s(b, "end_time"),
            end_epoch: s(b, "end_time_timestamp").parse().ok(),
        })
        .collect())
}

/// `barman` as the barman user.
pub fn barman(args: &[&str]) -> Cmd {
    Cmd::new("barman").user("barman").args(args.iter().copied())
}

/// The backups of the server.
pub fn backups(ctx: &Ctx) -> Result<Vec<Backup>> {
    let server = ctx.cluster.barman.server.as_str();
    let out = barman(&["-f", "json", "list-backups", server]).run()?;
    parse_backups(server, &out.stdout)
}

/// `barman check`; `strict` false tolerates the items that cannot pass before the first backup.
fn check_lines(ctx: &Ctx, strict: bool) -> Result<(Vec<CheckLine>, Vec<CheckLine>)> {
    // Shared within a run's first checks (three steps read it; 0.3-2 s of Python each).
    let out = barman(&["check", &ctx.cluster.barman.server]).probe_shared()?;
    let lines = parse_check(&out.stdout);
    if lines.is_empty() {
        return Err(Error::Parse {
            what: "barman check".into(),
            detail: format!("{}{}", out.stdout, out.stderr),
        });
    }
    let before_first_backup = ["backup maximum age", "minimum redundancy requirements"];
    let failing = lines
        .iter()
        .filter(|l| !l.ok && (strict || !before_first_backup.contains(&l.item.as_str())))
        .cloned()
        .collect();
    Ok((lines, failing))
}

fn describe(lines: &[CheckLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{}: {}", l.item, l.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// sshd presents the pinned host key (reloaded when the key file changed).
pub fn sshd_serves_pinned_key(ctx: &Ctx) -> Step<'_> {
    let served = move || -> Result<Check> {
        let want = ctx.secrets()?.backup_host_key.public.clone();
        let want_key = want
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let out = Cmd::new("ssh-keyscan")
            .args(["-t", "ed25519", "-T", "5", "127.0.0.1"])
            .probe()?;
        let got = out.stdout.lines().find(|l| !l.starts_with('#')).map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        });
        Ok(match got {
            Some(g) if g == want_key => Check::Ok,
            Some(g) => Check::Needs(format!("sshd presents {g}")),
            None => Check::Needs(format!("ssh-keyscan got no key: {}", out.stderr.trim())),
        })
    };
    // sshd re-executes itself on reload and does not answer for a moment (OpenSSH 10 on
    // Debian 13 was seen refusing ssh-keyscan right after `systemctl reload`).
    Step::change("sshd presents the pinned host key", served, || {
        system::systemctl("reload-or-restart", "ssh")
    })
    .settles(Duration::from_secs(30))
}

fn master_conninfo(ctx: &Ctx) -> String {
    let c = &ctx.cluster;
    format!(
        "host={} port={} user={} dbname=postgres application_name=pgnode",
        c.master.address,
        ctx.port(),
        c.barman.user
    )
}

/// psql to the master as Barman's ordinary role (passfile in barman's home).
pub fn query_master(ctx: &Ctx, sql: &str) -> Cmd {
    pg::remote(
        "barman",
        &master_conninfo(ctx),
        std::path::Path::new(&format!("{BARMAN_HOME}/.pgpass")),
        sql,
    )
}

/// Barman's ordinary login to the master works (waits, bounded, for the master to come up;
/// fails at once on a refused password or pg_hba line).
pub fn master_login(ctx: &Ctx) -> Step<'_> {
    let probe = move || -> Result<std::result::Result<(), String>> {
        let out = query_master(ctx, "SELECT 1;").probe()?;
        if out.success() {
            return Ok(Ok(()));
        }
        let err = out.stderr.trim().to_string();
        if err.contains("password authentication failed") || err.contains("no pg_hba.conf entry") {
            return Err(Error::Refused(format!(
                "the master refuses Barman's login: {err}"
            )));
        }
        Ok(Err(err))
    };
    Step::poll(
        format!(
            "barman logs in to {} as {}",
            ctx.cluster.master.name, ctx.cluster.barman.user
        ),
        "the master to accept Barman's login",
        Duration::from_secs(600),
        Duration::from_secs(3),
        probe,
    )
}

/// At least one WAL file has reached Barman ("WAL archive: OK"). On a fresh primary, write a
/// restore point (so there is something to switch) and `barman switch-wal --archive`.
pub fn wal_archived(ctx: &Ctx) -> Step<'_> {
    let server = ctx.cluster.barman.server.as_str();
    Step::change(
        "a WAL file has been archived by Barman",
        move || {
            let (lines, _) = check_lines(ctx, false)?;
            Ok(match lines.iter().find(|l| l.item == "WAL archive") {
                Some(l) if !l.ok => Check::Needs(format!("WAL archive: {}", l.detail)),
                _ => Check::Ok,
            })
        },
        move || {
            query_master(ctx, "SELECT pg_create_restore_point('pgnode bring-up');").run()?;
            switch_wal_archived(server)
        },
    )
}

/// Closes the primary's current WAL segment and waits (bounded, 120 s) until Barman has archived
/// it, so that everything written before this call is recoverable from Barman alone.
pub fn switch_wal_archived(server: &str) -> Result<()> {
    barman(&[
        "switch-wal",
        "--archive",
        "--archive-timeout",
        "120",
        server,
    ])
    .run()?;
    Ok(())
}

/// `barman check` passes: every line OK (`strict`), or every line that can pass before the
/// first backup. Waits (bounded) for transient items, then fails listing the failing lines.
pub fn check(ctx: &Ctx, strict: bool) -> Step<'_> {
    let probe = move || -> Result<std::result::Result<(), String>> {
        let (_, failing) = check_lines(ctx, strict)?;
        Ok(if failing.is_empty() {
            Ok(())
        } else {
            Err(describe(&failing))
        })
    };
    let name = if strict {
        "barman check: every line OK"
    } else {
        "barman check: OK before the first backup"
    };
    Step::poll(
        name,
        "barman check to pass",
        Duration::from_secs(120),
        Duration::from_secs(3),
        probe,
    )
}

/// A base backup of the primary's current timeline exists (DONE); it is taken now when
/// missing (first run, or a new primary), later ones on the schedule.
pub fn first_backup(ctx: &Ctx) -> Step<'_> {
    let server = ctx.cluster.barman.server.as_str();
    Step::change(
        "a base backup of the primary's current timeline exists",
        move || {
            Ok(match crate::follow::no_current_backup(ctx)? {
                None => Check::Ok,
                Some(why) => Check::Needs(why),
            })
        },
        move || {
            // No --wait: on an idle primary the backup's last WAL file is only closed by the
            // next WAL switch, and Barman 3.13 with PostgreSQL 17 then waits until its timeout
            // (seen in the lab on Debian 13). Close that file here, then wait for DONE.
            barman(&["backup", server]).run()?;
            // One switch closes the file: the backup has ended by now.
            query_master(
                ctx,
                "SELECT pg_create_restore_point('pgnode first backup'), pg_switch_wal();",
            )
            .run()?;
            wait::until(
                "the backup to be DONE",
                Duration::from_secs(300),
                Duration::from_secs(3),
                || {
                    barman(&["-q", "cron"]).discard_output().run()?;
                    Ok(match crate::follow::no_current_backup(ctx)? {
                        None => Ok(()),
                        Some(why) => Err(format!(
                            "{why}; listed: {}",
                            backups(ctx)?
                                .iter()
                                .map(|b| format!("{} {}", b.id, b.status))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    })
                },
            )
        },
    )
}
