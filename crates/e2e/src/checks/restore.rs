//! Point-in-time recovery through `pgnode restore`: rows A before the target time are in the
//! restored copy, rows B after it are not; `--discard` then stops and removes the copy.

use std::time::Duration;

use crate::text::flat;
use crate::{ensure, fail, pending, token, wait_for, Ctx, Node, Output, Result};

/// The restore sandbox's socket directory and the copy's port (pgnode restore's own).
pub const SOCK: &str = "/var/lib/barman/pgnode-restore/sock";
pub const DATA: &str = "/var/lib/barman/pgnode-restore/data";
pub const PORT: &str = "5499";

/// Removes a kept copy when the check ends, passed or not.
pub struct Discard<'a>(pub &'a Node);

impl Drop for Discard<'_> {
    fn drop(&mut self) {
        let _ = self.0.pgnode(&["restore", "--discard"]);
    }
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let server = cx.cluster.config.barman.server.as_str();
    backup.pgnode(&["restore", "--discard"])?;
    let _discard = Discard(backup);
    let (row_a, row_b) = (format!("A{}", token()), format!("B{}", token()));
    primary.sql(
        "postgres",
        "create table if not exists e2e_restore (token text primary key, at timestamptz default clock_timestamp())",
    )?;
    let insert = |row: &str| format!("insert into e2e_restore (token) values ('{row}')");
    primary.sql("postgres", &insert(&row_a))?;
    let t_a = primary.sql(
        "postgres",
        "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )?;
    primary.sql("postgres", &insert(&row_b))?;
    let seg = primary.sql("postgres", "select pg_walfile_name(pg_switch_wal())")?;
    cx.note(format!(
        "rows {row_a}, then target time {t_a}, then {row_b}; switched WAL {seg}"
    ));
    wait_archived(backup, server, &seg)?;
    let out = backup.pgnode(&["restore", "--target-time", &t_a, "--keep"])?;
    ensure(
        out.success(),
        format!("pgnode restore --target-time '{t_a}' --keep failed"),
        out.combined(),
    )?;
    ensure(
        out.stdout.contains("\n  timeline  ") && out.stdout.contains("pgnode restore --discard"),
        "pgnode restore did not report the recovery and how to remove the copy",
        out.combined(),
    )?;
    let report: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            [
                "  backup ",
                "  recovery ended ",
                "  end LSN ",
                "  timeline ",
                "  durations ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    cx.note(format!("pgnode restore: {}", flat(&report.join("\n"))));
    let q =
        format!("select token from e2e_restore where token in ('{row_a}', '{row_b}') order by 1");
    let got = copy_sql(backup, &q)?;
    ensure(
        got.success(),
        "cannot query the restored copy",
        got.combined(),
    )?;
    if got.stdout.trim_end() != row_a {
        return fail(
            format!(
                "after recovery to '{t_a}' want only {row_a}, got: {}",
                flat(&got.stdout)
            ),
            out.combined(),
        );
    }
    cx.note(format!("restored copy has {row_a} and not {row_b}"));
    let out = backup.pgnode(&["restore", "--discard"])?;
    ensure(
        out.success(),
        "pgnode restore --discard failed",
        out.combined(),
    )?;
    ensure(
        !backup.run(&["test", "-e", DATA])?.success(),
        "--discard left the restored copy behind",
        out.combined(),
    )?;
    cx.note("--discard stopped and removed the copy");
    Ok(())
}

/// psql on the restored copy (its private socket; peer, as barman mapped to postgres).
pub fn copy_sql(backup: &Node, query: &str) -> Result<Output> {
    backup.run_as(
        "barman",
        &[
            "psql", "-XAtq", "-h", SOCK, "-p", PORT, "-U", "postgres", "-d", "postgres", "-c",
            query,
        ],
    )
}

/// Waits (bounded) until Barman has archived WAL segment `seg` itself (a `.partial` of the
/// same segment, from receive-wal or an old timeline, is not that segment).
pub fn wait_archived(backup: &Node, server: &str, seg: &str) -> Result<()> {
    let dir = format!(
        "/var/lib/barman/{server}/wals/{}/",
        seg.get(..16).unwrap_or(seg)
    );
    wait_for(
        &format!("Barman to archive WAL {seg}"),
        Duration::from_secs(150),
        || {
            let out = backup.run(&["ls", &dir])?;
            if out.stdout.lines().any(|l| l.trim() == seg) {
                return Ok(Some(()));
            }
            pending(out.combined())
        },
    )
}
