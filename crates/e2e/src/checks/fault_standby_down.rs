//! Drill 1: the standby is down for longer than `wal_keep_size` covers, then back: it catches up
//! through its slot (no re-clone, nothing lost). A test config with a small `wal_keep_size`
//! makes "longer" cheap; the cluster's own config is restored at the end.

use std::time::Duration;

use crate::faults::{self, Clock};
use crate::{ensure, Ctx, Result};

const CONFIG: &str = "e2e-fault-standby-down.json";

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "a standby down while the primary writes more WAL than wal_keep_size catches up through its slot by itself: no re-clone, 0 acknowledged commits lost, every node healthy",
    );
    let (primary, standby) = (cx.cluster.primary(), faults::first_standby(cx)?);
    let layout = cx.cluster.target().layout();
    let config = faults::test_config(
        cx,
        CONFIG,
        &[("wal_keep_size_mb", 16), ("max_slot_wal_keep_size_mb", 512)],
    )?;
    faults::converge_with(primary, &config)?;
    cx.note(format!(
        "{primary}: wal_keep_size 16 MB, max_slot_wal_keep_size 512 MB ({config})"
    ));
    let result = drill(cx, primary, standby);
    // Restore whatever happened: the next checks see the cluster's own config.
    faults::converge_with(primary, &layout.config)?;
    primary.run(&["rm", "-f", &config])?;
    result?;
    faults::all_healthy(cx, faults::HEAL)
}

fn drill(cx: &Ctx, primary: &crate::Node, standby: &crate::Node) -> Result<()> {
    let slot = faults::standby_slot(cx, standby)?;
    let clones_before = set_aside(standby)?;
    let load = faults::start_load(cx, "e2e_fault_standby_down", 25)?;
    standby.service_stop()?;
    faults::write_wal(primary, 48)?;
    primary.sql("postgres", "checkpoint")?;
    let state = primary.sql(
        "postgres",
        &format!("select wal_status || ' ' || pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint from pg_replication_slots where slot_name = '{slot}'"),
    )?;
    let held: i64 = state
        .split_whitespace()
        .nth(1)
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    ensure(
        held > 16 * 1048576 && !state.starts_with("lost"),
        format!("slot {slot} should hold more WAL than wal_keep_size (16 MB) and still be usable"),
        &state,
    )?;
    cx.note(format!(
        "{standby} down; slot {slot} holds {} MB of WAL (wal_status {})",
        held / 1048576,
        state.split(' ').next().unwrap_or("")
    ));
    let clock = Clock::start();
    standby.service_start()?;
    faults::caught_up(cx, standby, Duration::from_secs(120))?;
    let secs = clock.secs();
    let clones_after = set_aside(standby)?;
    ensure(
        clones_after == clones_before,
        format!("{standby} was re-cloned instead of catching up"),
        format!("set-aside directories: {clones_before} -> {clones_after}"),
    )?;
    cx.note(format!(
        "{standby} caught up through the slot in {secs:.1}s, without a re-clone"
    ));
    load.finish(cx, false)?;
    faults::table_line(
        cx,
        "standby down past wal_keep_size",
        "nothing to do: the slot kept the WAL; the standby catches up on start",
        "slot held > wal_keep_size; standby streams and replays every acknowledged commit",
        Some(secs),
    );
    Ok(())
}

/// How many data directories pgnode has set aside on `node` (each one is a re-clone).
fn set_aside(node: &crate::Node) -> Result<String> {
    let out = node.run(&[
        "sh",
        "-c",
        "ls -d /var/lib/postgresql/*/main.pgnode-set-aside-* 2>/dev/null | wc -l",
    ])?;
    Ok(out.stdout.trim().to_string())
}
