//! Point-in-time recovery across a timeline switch. Promise: from the base backup taken before
//! a switchover, `barman recover --target-tli NEW` to a time before the switchover gives the
//! row written before it and not the one written after; to a time after it gives both: WAL of
//! both timelines is usable. The throwaway server runs on the backup node;
//! the original topology is restored afterwards.
//!
//! The throwaway-server handling mirrors the `restore` check's (Debian keeps the config files
//! in /etc, so the recovered directory gets empty ones and a local-only hba).

use std::time::Duration;

use super::day2;
use crate::text::{flat, tail};
use crate::{ensure, pending, token, wait_for, Ctx, Node, Result};

const DIR: &str = "/var/lib/barman/pitr-timeline-test";
const PORT: &str = "5498";

const CLEANUP: &str = r#"d=$1
if [ -f "$d/postmaster.pid" ]; then
  runuser -u barman -- /usr/lib/postgresql/*/bin/pg_ctl -D "$d" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
fi
rm -rf "$d" "$d.sock" "$d.log""#;

const PREPARE: &str = r#"set -e
d=$1
cd "$d"
touch postgresql.conf pg_ident.conf
echo 'local all all trust' >pg_hba.conf
install -d -m 0700 -o barman -g barman "$d.sock"
chown -R barman:barman "$d" && chmod 0700 "$d""#;

const INSTALL: &str = r#"set -e
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/e2e-no-main.conf
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "postgresql-$1""#;

const NOW: &str =
    "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'";

pub fn run(cx: &mut Ctx) -> Result<()> {
    let backup = cx.cluster.backup().clone();
    backup.ok(&["bash", "-c", CLEANUP, "cleanup", DIR])?;
    let r = day2::with_restore(cx, body);
    let _ = backup.run(&["bash", "-c", CLEANUP, "cleanup", DIR]);
    r
}

fn body(cx: &mut Ctx) -> Result<()> {
    let orig = day2::original(cx)?;
    let a = cx.cluster.primary().clone();
    let Some(b) = cx.cluster.standbys().first().map(|n| (*n).clone()) else {
        return crate::fail("the config has no standby", "");
    };
    let backup = cx.cluster.backup().clone();
    let server = cx.cluster.config.barman.server.clone();
    let base = day2::newest_done(cx)?;
    ensure(!base.is_empty(), "no DONE base backup to recover from", "")?;
    let (before, after) = (format!("before{}", token()), format!("after{}", token()));
    a.sql(
        "postgres",
        "create table if not exists e2e_pitr (token text primary key)",
    )?;
    a.sql(
        "postgres",
        &format!("insert into e2e_pitr values ('{before}')"),
    )?;
    let t_before = a.sql("postgres", NOW)?;
    let there = day2::with_master(&orig, &b.name);
    let path = day2::write_config(cx, day2::SWITCHED, &there)?;
    day2::converge(cx, &there, &path, &a.name, &[])?;
    b.sql(
        "postgres",
        &format!("insert into e2e_pitr values ('{after}')"),
    )?;
    let t_after = b.sql("postgres", NOW)?;
    let tli = b.sql(
        "postgres",
        "select timeline_id from pg_control_checkpoint()",
    )?;
    let seg = b.sql("postgres", "select pg_walfile_name(pg_switch_wal())")?;
    wait_archived(&backup, &server, &seg)?;
    cx.note(format!(
        "base backup {base}; {before} at {t_before} on {a}; switchover to {b} (timeline {tli}); {after} at {t_after}"
    ));
    let major = a.sql(
        "postgres",
        "select current_setting('server_version_num')::int / 10000",
    )?;
    let out = backup.run(&["bash", "-c", INSTALL, "install", &major])?;
    ensure(
        out.success(),
        "cannot install the server on the backup node",
        tail(&out.combined(), 20),
    )?;
    // The old timeline's last segment exists only as a .partial: even a target before the
    // switchover needs the new timeline's copy of that segment (Barman copies the WAL of the
    // backup's timeline only, unless --target-tli says otherwise).
    let got = recover(
        &backup,
        &server,
        &base,
        &major,
        &["--target-time", &t_before, "--target-tli", &tli],
        (&before, &after),
    )?;
    ensure(
        got == before,
        format!("recovery to {t_before} (before the switchover) should give only {before}"),
        &got,
    )?;
    cx.note(format!(
        "recover {base} to {t_before} --target-tli {tli}: {}",
        flat(&got)
    ));
    let got = recover(
        &backup,
        &server,
        &base,
        &major,
        &["--target-time", &t_after, "--target-tli", &tli],
        (&before, &after),
    )?;
    let want = {
        let mut v = [before.clone(), after.clone()];
        v.sort();
        v.join("\n")
    };
    ensure(
        got == want,
        format!(
            "recovery to {t_after} (after the switchover, timeline {tli}) should give both rows"
        ),
        &got,
    )?;
    cx.note(format!(
        "recover {base} to {t_after} --target-tli {tli}: {}",
        flat(&got)
    ));
    Ok(())
}

/// Recovers `base` into DIR with `target`, starts it, returns which of `tokens` it has.
fn recover(
    backup: &Node,
    server: &str,
    base: &str,
    major: &str,
    target: &[&str],
    tokens: (&str, &str),
) -> Result<String> {
    backup.ok(&["bash", "-c", CLEANUP, "cleanup", DIR])?;
    // --get-wal: the recovered server fetches WAL from Barman on demand. Barman 3.4's own copy
    // stops at the first segment archived after the target time, which across a timeline
    // switch is the old timeline's, before the new timeline's segment holding the target.
    let mut argv = vec!["recover", "--get-wal"];
    argv.extend_from_slice(target);
    argv.extend_from_slice(&[server, base, DIR]);
    let out = backup.barman(&argv)?;
    ensure(
        out.success(),
        format!("barman {}", argv.join(" ")),
        out.combined(),
    )?;
    let out = backup.run(&["bash", "-c", PREPARE, "prepare", DIR])?;
    ensure(
        out.success(),
        format!("cannot prepare {DIR}"),
        out.combined(),
    )?;
    // Barman writes a restore_command through sudo (not installed here); the server runs as
    // barman anyway, so it calls barman get-wal directly (the command line wins over auto.conf).
    let opts = format!(
        "-p {PORT} -c listen_addresses='' -c unix_socket_directories={DIR}.sock -c archive_mode=off \
         -c restore_command='barman get-wal {server} %f > %p' \
         -c primary_conninfo='' -c primary_slot_name='' -c hot_standby=on -c logging_collector=off \
         -c max_connections=100 -c max_wal_senders=10 -c max_worker_processes=8"
    );
    let pg_ctl = format!("/usr/lib/postgresql/{major}/bin/pg_ctl");
    let log = format!("{DIR}.log");
    let out = backup.run_as(
        "barman",
        &[
            &pg_ctl, "-D", DIR, "-l", &log, "-o", &opts, "-w", "-t", "120", "start",
        ],
    )?;
    ensure(
        out.success(),
        "the recovered server does not start",
        format!("{}\n{}", out.combined(), log_tail(backup)),
    )?;
    let q = "select case when not pg_is_in_recovery() then 'promoted' else pg_get_wal_replay_pause_state() end";
    wait_for(
        "recovery to reach its target",
        Duration::from_secs(120),
        || {
            let out = sql(backup, q)?;
            match out.stdout.trim() {
                "promoted" | "paused" => Ok(Some(())),
                s => pending(format!(
                    "state: {s} {}\n{}",
                    out.stderr.trim(),
                    log_tail(backup)
                )),
            }
        },
    )?;
    // Only this run's rows: the table outlives earlier runs.
    let q = format!(
        "select token from e2e_pitr where token in ('{}', '{}') order by 1",
        tokens.0, tokens.1
    );
    let out = sql(backup, &q)?;
    ensure(
        out.success(),
        "cannot query the recovered server",
        out.combined(),
    )?;
    Ok(out.stdout.trim_end().to_string())
}

fn sql(backup: &Node, query: &str) -> Result<crate::Output> {
    let sock = format!("{DIR}.sock");
    backup.run_as(
        "barman",
        &[
            "psql", "-XAtq", "-h", &sock, "-p", PORT, "-U", "postgres", "-d", "postgres", "-c",
            query,
        ],
    )
}

fn log_tail(backup: &Node) -> String {
    backup
        .run(&["tail", "-n", "20", &format!("{DIR}.log")])
        .map(|o| o.combined())
        .unwrap_or_default()
}

fn wait_archived(backup: &Node, server: &str, seg: &str) -> Result<()> {
    let dir = format!(
        "/var/lib/barman/{server}/wals/{}/",
        seg.get(..16).unwrap_or(seg)
    );
    wait_for(
        &format!("Barman to archive WAL {seg}"),
        Duration::from_secs(150),
        || {
            let out = backup.run(&["ls", &dir])?;
            // The exact name: a `.partial` of the same segment (from receive-wal) is not the file.
            if out.stdout.lines().any(|l| l.trim() == seg) {
                return Ok(Some(()));
            }
            pending(out.combined())
        },
    )
}
