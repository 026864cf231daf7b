//! The throwaway server on a recovered data directory. Debian keeps postgresql.conf, pg_hba.conf
//! and pg_ident.conf in /etc, so a directory from `barman recover` has none: the sandbox gets
//! minimal ones that keep the copy to itself (no TCP, a private 0700 socket directory, peer
//! authentication for the barman account only, no archiving, no replication, no synchronous
//! standbys to wait for). It runs as barman, who owns what `barman recover` wrote.

use std::path::Path;
use std::time::Duration;

use pgnode_core::exec::Cmd;
use pgnode_core::files::FileSpec;
use pgnode_core::{pg, wait, Error, Result};

use super::sandbox::Sandbox;

/// The throwaway server's port: only the name of its socket file, since it listens on no TCP
/// address.
pub const PORT: u16 = 5499;

/// How long recovery may take before the restore gives up.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// The restored copy's restore_command: WAL straight from Barman's archive, on demand (the
/// server runs as barman; Barman's own line goes through sudo). `-P` also serves the segment
/// receive-wal is still writing, as Barman's own recovery line does.
///
/// Why not Barman's WAL copy: across a timeline switch (a switchover, a failover) Barman 3.4
/// copies WAL only up to the first segment archived after the target time, in archive order,
/// and the old timeline's `.partial` comes first: the new timeline's copy of the switch
/// segment, which recovery needs even for a target before the switch, is never copied.
pub fn restore_command(server: &str) -> String {
    format!("'/usr/bin/barman get-wal -P {server} %f > \"%p\"'")
}

/// Settings of the throwaway server. Each also overrides the same key in the primary's
/// postgresql.auto.conf (which comes with the backup and is read after postgresql.conf).
fn settings(sock: &Path, server: &str) -> Vec<(&'static str, String)> {
    vec![
        ("restore_command", restore_command(server)),
        ("listen_addresses", "''".into()),
        ("port", PORT.to_string()),
        ("unix_socket_directories", format!("'{}'", sock.display())),
        ("archive_mode", "off".into()),
        ("archive_command", "''".into()),
        ("primary_conninfo", "''".into()),
        ("primary_slot_name", "''".into()),
        ("synchronous_standby_names", "''".into()),
        // No read-only connections during replay: none are needed (the restore waits for the
        // promotion), and hot standby would require max_connections & co. >= the primary's.
        ("hot_standby", "off".into()),
        ("logging_collector", "off".into()),
        ("timezone", "'UTC'".into()),
        ("log_timezone", "'UTC'".into()),
    ]
}

/// postgresql.conf, pg_hba.conf and pg_ident.conf for the recovered directory.
pub fn conf_files(sb: &Sandbox, server: &str) -> Vec<FileSpec> {
    let data = sb.data();
    let conf: String = settings(&sb.sock(), server)
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let head = "# Written by pgnode restore: a throwaway server on a restored copy, reachable only through\n# its private socket directory.\n";
    vec![
        FileSpec::new(
            data.join("postgresql.conf"),
            format!("{head}{conf}"),
            "barman",
            0o600,
        ),
        FileSpec::new(
            data.join("pg_hba.conf"),
            format!("{head}local all postgres peer map=pgnode\n"),
            "barman",
            0o600,
        ),
        FileSpec::new(
            data.join("pg_ident.conf"),
            format!("{head}pgnode barman postgres\n"),
            "barman",
            0o600,
        ),
    ]
}

/// The primary's postgresql.auto.conf without the keys the throwaway server sets itself
/// (commented out, so the file still shows what the primary had).
pub fn strip_auto_conf(text: &str, sock: &Path, server: &str) -> String {
    let keys: Vec<&str> = settings(sock, server).iter().map(|(k, _)| *k).collect();
    text.lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            if !l.trim_start().starts_with('#') && keys.contains(&key) {
                format!("# pgnode restore: {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

fn pg_ctl(sb: &Sandbox, major: &str) -> Cmd {
    Cmd::new(format!("/usr/lib/postgresql/{major}/bin/pg_ctl"))
        .user("barman")
        .args(["-D", &sb.data().to_string_lossy()])
}

/// psql to the throwaway server as its superuser (peer, mapped from barman).
pub fn psql(sb: &Sandbox, sql: &str) -> Cmd {
    psql_db(sb, "postgres", sql)
}

/// psql to one database of the throwaway server.
pub fn psql_db(sb: &Sandbox, db: &str, sql: &str) -> Cmd {
    pg::psql_args(Cmd::new("psql").user("barman").args([
        "-h",
        &sb.sock().to_string_lossy(),
        "-p",
        &PORT.to_string(),
        "-U",
        "postgres",
        "-d",
        db,
    ]))
    .stdin(sql)
}

/// How long the restored server may take to write its pid file after `pg_ctl -W start`.
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Starts the server without waiting: replay can take long, [`wait_promoted`] waits.
///
/// Errors: pg_ctl's failure.
pub fn start(sb: &Sandbox, major: &str) -> Result<()> {
    // This run's log only: a failure quotes its tail, which must not be an earlier run's.
    match std::fs::remove_file(sb.log()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Refused(format!(
                "cannot remove {}: {e}",
                sb.log().display()
            )))
        }
        _ => {}
    }
    pg_ctl(sb, major)
        .args(["-l", &sb.log().to_string_lossy(), "-W", "start"])
        .run()?;
    Ok(())
}

/// The last `n` lines of the server log.
pub fn log_tail(sb: &Sandbox, n: usize) -> String {
    let text = std::fs::read_to_string(sb.log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits (bounded) until the server has left recovery; fails at once when it stops.
///
/// Errors: [`Error::Refused`] with the log tail when the server died (e.g. the target lies
/// beyond the archived WAL), [`Error::Timeout`] with the last log line.
pub fn wait_promoted(sb: &Sandbox, timeout: Duration) -> Result<()> {
    // `pg_ctl -W start` returns before the postmaster has written its pid file: a missing pid
    // means "stopped" only once the server was seen running (or failed to appear in time).
    let started = std::time::Instant::now();
    let mut seen = false;
    wait::until(
        "the restored server to finish recovery and promote",
        timeout,
        Duration::from_secs(1),
        || {
            let out = psql(sb, "SELECT pg_is_in_recovery();").probe()?;
            if out.success() && out.stdout.trim() == "f" {
                return Ok(Ok(()));
            }
            if sb.running_pid().is_some() {
                seen = true;
            } else if seen || started.elapsed() > STARTUP_GRACE {
                return Err(Error::Refused(format!(
                    "the restored server stopped before recovery ended; {} ends with:\n{}",
                    sb.log().display(),
                    log_tail(sb, 15)
                )));
            }
            Ok(Err(log_tail(sb, 1)))
        },
    )
}

/// What the recovered server holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// Commit time of the last transaction replayed (`none` when recovery replayed none).
    pub end_time: String,
    /// Last WAL position replayed.
    pub end_lsn: String,
    /// The timeline the server runs on after its promotion.
    pub timeline: u32,
    pub server_version: String,
    /// Database name and size in bytes.
    pub databases: Vec<(String, u64)>,
}

/// Asks the promoted server what recovery brought back.
///
/// Errors: psql's failure, or [`Error::Parse`].
pub fn inspect(sb: &Sandbox) -> Result<Found> {
    let row = pg::query(&psql(
        sb,
        "SELECT coalesce(pg_last_xact_replay_timestamp()::text, 'none'), \
         coalesce(pg_last_wal_replay_lsn()::text, '?'), \
         substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), current_setting('server_version');",
    ))?;
    let dbs = pg::query(&psql(
        sb,
        "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datallowconn ORDER BY datname;",
    ))?;
    let bad = |detail: String| Error::Parse {
        what: "the restored server's recovery facts".into(),
        detail,
    };
    let r = match row.as_slice() {
        [r] if r.len() == 4 => r,
        _ => return Err(bad(format!("{row:?}"))),
    };
    Ok(Found {
        end_time: r[0].clone(),
        end_lsn: r[1].clone(),
        timeline: u32::from_str_radix(&r[2], 16).map_err(|e| bad(format!("{}: {e}", r[2])))?,
        server_version: r[3].clone(),
        databases: dbs
            .iter()
            .filter_map(|d| Some((d.first()?.clone(), d.get(1)?.parse().ok()?)))
            .collect(),
    })
}

/// Stops the server (fast: it is a throwaway, but a clean stop keeps its log readable).
///
/// Errors: pg_ctl's failure.
pub fn stop(sb: &Sandbox, major: &str) -> Result<()> {
    pg_ctl(sb, major)
        .args(["-m", "fast", "-w", "-t", "120", "stop"])
        .run()?;
    Ok(())
}

/// Bytes as a short human figure.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_what_would_reach_out_and_comments_it_in_auto_conf() {
        let sock = Path::new("/sb/sock");
        let auto = "# Do not edit this file manually!\nsynchronous_standby_names = 'ANY 1 (slave)'\nwork_mem = '8MB'\nrestore_command = 'cp barman_wal/%f %p'\narchive_command = false\nrecovery_target_time = '2026-11-26 10:00:00+00'\n";
        let s = strip_auto_conf(auto, sock, "pg");
        assert!(s.contains("# pgnode restore: synchronous_standby_names"));
        assert!(s.contains("# pgnode restore: archive_command = false"));
        assert!(s.contains("\nwork_mem = '8MB'\n"));
        assert!(s.contains("# pgnode restore: restore_command = 'cp barman_wal/%f %p'\n"));
        assert!(s.contains("\nrecovery_target_time = '2026-11-26 10:00:00+00'\n"));
        assert!(s.starts_with("# Do not edit"));
    }

    #[test]
    fn replay_fetches_wal_from_the_archive_as_barman() {
        let set = settings(Path::new("/sb/sock"), "pg");
        let cmd = set
            .iter()
            .find(|(k, _)| *k == "restore_command")
            .map(|(_, v)| v);
        assert_eq!(
            cmd.map(String::as_str),
            Some("'/usr/bin/barman get-wal -P pg %f > \"%p\"'")
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(7_500_000), "7.5 MB");
        assert_eq!(human(1_234_000_000), "1.23 GB");
    }
}
