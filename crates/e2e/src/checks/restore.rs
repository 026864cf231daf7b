//! Point-in-time recovery: rows A before the target time are there, rows B after it are not, in
//! a throwaway server on the backup node recovered by `barman recover --target-time`.

use std::time::Duration;

use crate::text::{flat, tail};
use crate::{ensure, fail, pending, token, wait_for, Ctx, Failure, Node, Result};

const DIR: &str = "/var/lib/barman/restore-test";
const PORT: &str = "5499";

/// Stops the throwaway server and removes its files, whatever state a run left behind.
const CLEANUP: &str = r#"d=$1
if [ -f "$d/postmaster.pid" ]; then
  runuser -u barman -- /usr/lib/postgresql/*/bin/pg_ctl -D "$d" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
fi
rm -rf "$d" "$d.sock" "$d.log""#;

/// The recovered directory holds the primary's postgresql.auto.conf but not Debian's config files
/// (they live in /etc): give it empty ones and a local-only hba (a socket in a directory only
/// barman can enter; no network listener).
const PREPARE: &str = r#"set -e
d=$1
cd "$d"
touch postgresql.conf pg_ident.conf
echo 'local all all trust' >pg_hba.conf
install -d -m 0700 -o barman -g barman "$d.sock"
chown -R barman:barman "$d" && chmod 0700 "$d"
grep -E '^(restore_command|recovery_target|primary_|archive_)' postgresql.auto.conf || true
ls recovery.signal"#;

/// Installs postgresql-MAJOR from the guest's offline apt cache without a `main` cluster.
const INSTALL: &str = r#"set -e
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/e2e-no-main.conf
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "postgresql-$1""#;

/// Removes the throwaway server when the check ends, passed or not.
struct Cleanup<'a>(&'a Node);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["bash", "-c", CLEANUP, "cleanup", DIR]);
    }
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let server = cx.cluster.config.barman.server.as_str();
    backup.ok(&["bash", "-c", CLEANUP, "cleanup", DIR])?;
    let _cleanup = Cleanup(backup);
    let list = backup.barman(&["list-backup", server])?.combined();
    ensure(
        list.lines().any(finished_backup_line),
        "no finished base backup to recover from (the backup check makes one)",
        &list,
    )?;
    let major = primary.sql(
        "postgres",
        "select current_setting('server_version_num')::int / 10000",
    )?;
    ensure_server_binaries(cx, backup, &major)?;
    let (row_a, row_b) = (format!("A{}", token()), format!("B{}", token()));
    primary.sql(
        "postgres",
        "create table if not exists e2e_restore (token text primary key, at timestamptz default clock_timestamp())",
    )?;
    primary.sql(
        "postgres",
        &format!("insert into e2e_restore (token) values ('{row_a}')"),
    )?;
    let t_a = primary.sql(
        "postgres",
        "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )?;
    primary.sql(
        "postgres",
        &format!("insert into e2e_restore (token) values ('{row_b}')"),
    )?;
    let seg = primary.sql("postgres", "select pg_walfile_name(pg_switch_wal())")?;
    cx.note(format!(
        "rows {row_a}, then target time {t_a}, then {row_b}; switched WAL {seg}"
    ));
    wait_archived(backup, server, &seg)?;
    let out = backup.barman(&["recover", "--target-time", &t_a, server, "latest", DIR])?;
    ensure(
        out.success(),
        format!("barman recover --target-time '{t_a}' failed"),
        out.combined(),
    )?;
    cx.note(format!(
        "barman recover --target-time '{t_a}' {server} latest {DIR}: done"
    ));
    start_recovered(cx, primary, backup, &major)?;
    let state = wait_for_target(backup)?;
    cx.note(format!("recovery reached the target: {state}"));
    let q =
        format!("select token from e2e_restore where token in ('{row_a}', '{row_b}') order by 1");
    let out = restored_sql(backup, &q)?;
    ensure(
        out.success(),
        "cannot query the recovered server",
        out.combined(),
    )?;
    let got = out.stdout.trim_end();
    if got != row_a {
        return fail(
            format!(
                "after recovery to '{t_a}' want only {row_a}, got: {}",
                flat(got)
            ),
            log_tail(backup, 15),
        );
    }
    cx.note(format!("recovered server has {row_a} and not {row_b}"));
    Ok(())
}

/// A `list-backup` line of a backup that finished (`master 20261126T104821 - ...`).
fn finished_backup_line(l: &str) -> bool {
    let w: Vec<&str> = l.split(' ').collect();
    let id_ok = w.get(1).is_some_and(|id| {
        let b = id.as_bytes();
        b.len() == 15
            && b[8] == b'T'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 8 || c.is_ascii_digit())
    });
    id_ok
        && w.get(2) == Some(&"-")
        && !["FAILED", "WAITING", "STARTED", "EMPTY"]
            .iter()
            .any(|s| l.contains(s))
}

fn ensure_server_binaries(cx: &Ctx, backup: &Node, major: &str) -> Result<()> {
    if backup
        .run(&[
            "test",
            "-x",
            &format!("/usr/lib/postgresql/{major}/bin/postgres"),
        ])?
        .success()
    {
        return Ok(());
    }
    cx.note(format!(
        "installing postgresql-{major} on {backup} (offline cache) for the throwaway server"
    ));
    let out = backup.run(&["bash", "-c", INSTALL, "install", major])?;
    ensure(
        out.success(),
        format!("cannot install postgresql-{major} on {backup}"),
        tail(&out.combined(), 20),
    )
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
            if out.stdout.lines().any(|l| l.starts_with(seg)) {
                return Ok(Some(()));
            }
            pending(out.combined())
        },
    )
}

/// Starts the recovered directory with everything that would reach out (archiving to Barman, a
/// primary to stream from) overridden on the command line, and the primary's limits that a hot
/// standby must not undercut.
fn start_recovered(cx: &Ctx, primary: &Node, backup: &Node, major: &str) -> Result<()> {
    let settings = primary.sql(
        "postgres",
        "select string_agg(format('-c %s=%s', name, setting), ' ') from pg_settings
    where name in ('max_connections','max_worker_processes','max_wal_senders','max_prepared_transactions','max_locks_per_transaction')",
    )?;
    let out = backup.run(&["bash", "-c", PREPARE, "prepare", DIR])?;
    ensure(
        out.success(),
        format!("cannot prepare {DIR}"),
        out.combined(),
    )?;
    let rec: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("restore_command") || l.starts_with("recovery_target"))
        .collect();
    cx.note(format!("recovery settings: {}", flat(&rec.join("\n"))));
    // pg_ctl hands -o to a shell of its own: the quotes below are for that shell.
    let opts = format!(
        "-p {PORT} -c listen_addresses='' -c unix_socket_directories={DIR}.sock -c archive_mode=off \
         -c primary_conninfo='' -c primary_slot_name='' -c hot_standby=on -c logging_collector=off {settings}"
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
        format!("{}\n{}", out.combined().trim_end(), log_tail(backup, 30)),
    )
}

fn restored_sql(backup: &Node, query: &str) -> Result<crate::Output> {
    let sock = format!("{DIR}.sock");
    backup.run_as(
        "barman",
        &[
            "psql", "-XAtq", "-h", &sock, "-p", PORT, "-U", "postgres", "-d", "postgres", "-c",
            query,
        ],
    )
}

fn wait_for_target(backup: &Node) -> Result<String> {
    let q = "select case when not pg_is_in_recovery() then 'promoted' else pg_get_wal_replay_pause_state() end";
    wait_for(
        "recovery to reach its target (promoted or paused)",
        Duration::from_secs(120),
        || {
            // stdout only: a warning on stderr (a home directory runuser cannot enter) is no state.
            let out = restored_sql(backup, q)?;
            let state = out.stdout.trim().to_string();
            match state.as_str() {
                "promoted" | "paused" => Ok(Some(state)),
                _ => pending(format!("state: {}", out.combined().trim())),
            }
        },
    )
    .map_err(|f| {
        Failure::new(
            f.message,
            format!("{}\n{}", f.evidence, log_tail(backup, 30)),
        )
    })
}

fn log_tail(backup: &Node, n: usize) -> String {
    let n = n.to_string();
    backup
        .run(&["tail", "-n", &n, &format!("{DIR}.log")])
        .map(|o| o.combined())
        .unwrap_or_else(|f| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_backups() {
        assert!(finished_backup_line(
            "master 20261126T104821 - Thu Nov 26 10:48:28 2026 - Size: 22.4 MiB - WAL Size: 0 B"
        ));
        assert!(!finished_backup_line("master 20261126T104821 - FAILED"));
        assert!(!finished_backup_line("master 20261126T104821 - STARTED"));
        assert!(!finished_backup_line("Server master:"));
    }
}
