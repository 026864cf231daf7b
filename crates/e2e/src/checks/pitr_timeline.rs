//! Point-in-time recovery across a timeline switch. Promise: from the base backup taken before
//! a switchover (timeline 1), `pgnode restore --target-time` to a time before the switchover
//! gives the row written before it and not the one written after; to a time after it (on the
//! new timeline) gives both and not a third row written later: the WAL of both timelines in
//! Barman's archive is usable. The original topology is restored afterwards.
//!
//! Recovery to a time stops at the first commit after it: a target needs such a commit in the
//! archive (else PostgreSQL ends with "recovery ended before configured recovery target was
//! reached"). Here the row written after each target is that commit, and the segment holding
//! it is switched and archived before the restore.

use super::day2;
use super::restore::{copy_sql, wait_archived, Discard};
use crate::text::flat;
use crate::{ensure, fail, token, Ctx, Node, Result};

const TABLE: &str = "e2e_pitr";
const NOW: &str =
    "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'";

pub fn run(cx: &mut Ctx) -> Result<()> {
    let backup = cx.cluster.backup().clone();
    backup.pgnode(&["restore", "--discard"])?;
    let _discard = Discard(&backup);
    day2::with_restore(cx, body)
}

fn insert(node: &Node, row: &str) -> Result<String> {
    node.sql("postgres", &format!("insert into {TABLE} values ('{row}')"))
}

fn body(cx: &mut Ctx) -> Result<()> {
    let orig = day2::original(cx)?;
    let a = cx.cluster.primary().clone();
    let Some(b) = cx.cluster.standbys().first().map(|n| (*n).clone()) else {
        return fail("the config has no standby", "");
    };
    let backup = cx.cluster.backup().clone();
    let server = cx.cluster.config.barman.server.clone();
    let base = day2::newest_done(cx)?;
    ensure(!base.is_empty(), "no DONE base backup to recover from", "")?;
    let [before, after, later] = ["before", "after", "later"].map(|p| format!("{p}{}", token()));
    a.sql(
        "postgres",
        &format!("create table if not exists {TABLE} (token text primary key)"),
    )?;
    insert(&a, &before)?;
    let t_before = a.sql("postgres", NOW)?;
    let there = day2::with_master(&orig, &b.name);
    let path = day2::write_config(cx, day2::SWITCHED, &there)?;
    day2::converge(cx, &there, &path, &a.name, &[])?;
    let tli = b.sql(
        "postgres",
        "select timeline_id from pg_control_checkpoint()",
    )?;
    insert(&b, &after)?;
    let t_after = b.sql("postgres", NOW)?;
    insert(&b, &later)?;
    // The segment holding both rows must be in the archive itself: switch it and wait.
    let seg = b.sql("postgres", "select pg_walfile_name(pg_switch_wal())")?;
    wait_archived(&backup, &server, &seg)?;
    cx.note(format!(
        "base backup {base} (timeline 1); {before} at {t_before} on {a}; switchover to {b} \
         (timeline {tli}); {after} at {t_after}, then {later}; {seg} archived"
    ));
    let got = restore(cx, &backup, &base, &t_before, [&before, &after, &later])?;
    ensure(
        got == [before.as_str()],
        format!("recovery to {t_before} (before the switchover) should give only {before}"),
        got.join("\n"),
    )?;
    let got = restore(cx, &backup, &base, &t_after, [&before, &after, &later])?;
    ensure(
        got == [after.as_str(), before.as_str()],
        format!(
            "recovery to {t_after} (after the switchover, timeline {tli}) should give {before} and {after}, not {later}"
        ),
        got.join("\n"),
    )?;
    Ok(())
}

/// `pgnode restore --target-time T --backup BASE --keep`; returns which of `rows` the copy
/// holds (sorted), then discards it.
fn restore(cx: &Ctx, backup: &Node, base: &str, t: &str, rows: [&str; 3]) -> Result<Vec<String>> {
    let out = backup.pgnode(&["restore", "--target-time", t, "--backup", base, "--keep"])?;
    ensure(
        out.success(),
        format!("pgnode restore --target-time '{t}' --backup {base} --keep failed"),
        out.combined(),
    )?;
    let report: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            ["  recovery ended ", "  timeline ", "  durations "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    let q = format!(
        "select token from {TABLE} where token in ('{}', '{}', '{}') order by 1",
        rows[0], rows[1], rows[2]
    );
    let got = copy_sql(backup, &q)?;
    ensure(
        got.success(),
        "cannot query the restored copy",
        got.combined(),
    )?;
    let rows: Vec<String> = got.stdout.lines().map(String::from).collect();
    cx.note(format!(
        "restore to {t}: rows {}; {}",
        rows.join(", "),
        flat(&report.join("\n"))
    ));
    let out = backup.pgnode(&["restore", "--discard"])?;
    ensure(
        out.success(),
        "pgnode restore --discard failed",
        out.combined(),
    )?;
    Ok(rows)
}
