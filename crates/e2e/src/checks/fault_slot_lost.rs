//! Drill 2: the standby is down until its slot passes `max_slot_wal_keep_size`: the primary
//! stays up with bounded pg_wal, its status names the lost slot, and rerunning the slave role
//! re-clones the standby by itself, keeping the old data directory aside.

use std::time::Duration;

use crate::faults::{self, Clock};
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Result};

const CONFIG: &str = "e2e-fault-slot-lost.json";

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "a slot invalidated by max_slot_wal_keep_size leaves the primary up with bounded pg_wal and is named by its status; rerunning the slave role re-clones (old data directory kept aside), 0 acknowledged commits lost, every node healthy",
    );
    let hooks = faults::hooks(cx)?;
    let (primary, standby) = (cx.cluster.primary(), faults::first_standby(cx)?);
    let layout = cx.cluster.target().layout();
    let config = faults::test_config(
        cx,
        CONFIG,
        &[("wal_keep_size_mb", 16), ("max_slot_wal_keep_size_mb", 64)],
    )?;
    faults::converge_with(primary, &config)?;
    cx.note(format!(
        "{primary}: wal_keep_size 16 MB, max_slot_wal_keep_size 64 MB ({config})"
    ));
    let result = drill(cx, hooks, primary, standby);
    faults::converge_with(primary, &layout.config)?;
    primary.run(&["rm", "-f", &config])?;
    result?;
    faults::all_healthy(cx, faults::HEAL)
}

fn drill(cx: &Ctx, hooks: &dyn faults::Faults, primary: &Node, standby: &Node) -> Result<()> {
    let slot = faults::standby_slot(cx, standby)?;
    let load = faults::start_load(cx, "e2e_fault_slot_lost", 30)?;
    faults::hook("power off the standby", hooks.power_off(&standby.name))?;
    let undo = faults::Undo::power(hooks, &standby.name);
    faults::write_wal(primary, 112)?;
    let q = format!("select wal_status from pg_replication_slots where slot_name = '{slot}'");
    // A slot is invalidated by the checkpoint that removes its WAL. On PostgreSQL 17 with
    // summarize_wal = on, that WAL goes only once the summarizer has read it, so the first
    // checkpoint may leave the slot 'unreserved': checkpoint (and switch WAL) again until 'lost'.
    let what =
        format!("{primary}: slot {slot} invalidated (wal_status 'lost'), a checkpoint each try");
    wait_for(&what, Duration::from_secs(120), || {
        primary.sql("postgres", "select pg_switch_wal()")?;
        primary.sql("postgres", "checkpoint")?;
        let v = primary.sql("postgres", &q)?;
        if v == "lost" {
            return Ok(Some(()));
        }
        pending(format!("wal_status = {v}"))
    })?;
    let status = primary.pgnode(&["status"])?;
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(&format!("slot {slot}")) && l.contains("LOST"));
    ensure(
        !status.success() && line.is_some(),
        format!("{primary}'s status must fail and name slot {slot} as lost"),
        status.combined(),
    )?;
    cx.note(format!(
        "{primary} status names it: {}",
        line.unwrap_or("").trim()
    ));
    let wal = wal_bytes(primary)?;
    let bound = primary.sql(
        "postgres",
        "select (select setting::bigint from pg_settings where name = 'max_wal_size') + (select setting::bigint from pg_settings where name = 'max_slot_wal_keep_size') + (select setting::bigint from pg_settings where name = 'wal_keep_size')",
    )?;
    let bound: u64 = bound.parse::<u64>().unwrap_or(0) * 1048576;
    ensure(
        wal <= bound,
        "the primary's pg_wal exceeds max_wal_size + max_slot_wal_keep_size + wal_keep_size",
        format!("{wal} > {bound}"),
    )?;
    cx.note(format!(
        "{primary} pg_wal: {} MB (bound {} MB)",
        wal / 1048576,
        bound / 1048576
    ));
    let clock = Clock::start();
    faults::hook("boot the standby", hooks.boot(&standby.name))?;
    undo.done();
    let out = standby.pgnode(&["--role", standby.role.as_str()])?;
    let said = out.combined();
    if !out.success() || !said.contains(" failed=0 ") {
        return fail(
            format!("rerunning the slave role on {standby} did not repair it"),
            said,
        );
    }
    ensure(
        said.contains("clone again"),
        "the slave role did not say why it re-cloned",
        &said,
    )?;
    let Some(aside) = said
        .split_whitespace()
        .find(|w| w.contains(".pgnode-set-aside-"))
    else {
        return fail(
            "the slave role did not name where the old data directory is",
            said,
        );
    };
    let aside = aside.trim_end_matches([')', ',', '.']).to_string();
    standby.ok(&["test", "-f", &format!("{aside}/PG_VERSION")])?;
    faults::caught_up(cx, standby, Duration::from_secs(120))?;
    let secs = clock.secs();
    cx.note(format!("{standby} re-cloned and streaming {secs:.1}s after boot; old data directory kept at {aside}"));
    load.finish(cx, false)?;
    // pgnode never deletes it; the drill does, to keep the lab's disk bounded.
    standby.run(&["rm", "-rf", "--one-file-system", &aside])?;
    faults::table_line(
        cx,
        "standby slot lost (max_slot_wal_keep_size)",
        "master: status names the lost slot, pg_wal stays bounded; slave role: detects it (READ_REPLICATION_SLOT, WAL receiver log), re-clones, keeps the old data directory aside",
        "wal_status lost; pg_wal <= bound; one rerun of the slave role converges, streams, every acknowledged commit present",
        Some(secs),
    );
    Ok(())
}

fn wal_bytes(node: &Node) -> Result<u64> {
    let out = node.sql("postgres", "select sum(size)::bigint from pg_ls_waldir()")?;
    Ok(out.parse().unwrap_or(0))
}
