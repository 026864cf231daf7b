//! Zero-loss mode (`replication.synchronous`): the primary is killed (-9) under load and the
//! standby promoted with `--force-promote`. Promise: every commit the ledger saw acknowledged
//! is on the new primary (0 lost). The mode is switched off again and the original topology
//! restored afterwards, passed or not.

use std::time::Duration;

use super::day2;
use crate::{ensure, fail, Ctx, Ledger, Pgbench, Result};

const LEDGER: &str = "e2e_zero_loss";
const SYNC: &str = "synchronous.e2e.json";

pub fn run(cx: &mut Ctx) -> Result<()> {
    // with_restore converges the original config at the end: synchronous mode is off again.
    day2::with_restore(cx, body)
}

fn body(cx: &mut Ctx) -> Result<()> {
    let mut orig = day2::original(cx)?;
    orig["replication"]["synchronous"] = true.into();
    let a = cx.cluster.primary().clone();
    let Some(b) = cx.cluster.standbys().first().map(|n| (*n).clone()) else {
        return fail("the config has no standby", "");
    };
    let sync_path = day2::write_config(cx, SYNC, &orig)?;
    day2::converge(cx, &orig, &sync_path, "", &[])?;
    let names = a.sql("postgres", "show synchronous_standby_names")?;
    a.poll_until(
        "postgres",
        &format!(
            "select sync_state from pg_stat_replication where application_name = '{}'",
            b.name
        ),
        "quorum",
        Duration::from_secs(60),
    )?;
    cx.note(format!(
        "{a}: synchronous_standby_names = {names}; {b} is a quorum standby"
    ));

    let there = day2::with_master(&orig, &b.name);
    let path = day2::write_config(cx, day2::SWITCHED, &there)?;
    let pgbench = Pgbench::start(&a, 60, 4)?;
    let ledger = Ledger::start_bounded(&a, LEDGER, 120, 1_000_000)?;
    a.poll_until(
        "postgres",
        &format!("select count(*) >= 200 from {LEDGER}"),
        "t",
        Duration::from_secs(90),
    )?;
    a.kill9_postmaster()?;
    let report = ledger.stop()?;
    let _ = pgbench.finish();
    day2::role_ok(cx, &b, "master", &path, &["--force-promote"])?;
    day2::is_primary(&b)?;
    let present = report.verify_on(&b, LEDGER)?;
    ensure(
        present == report.acked.len(),
        "acknowledged commits are missing on the new primary",
        format!("{present} of {}", report.acked.len()),
    )?;
    cx.note(format!(
        "kill -9 under load, failover to {b}: {} acknowledged commits, 0 lost ({} in doubt)",
        report.acked.len(),
        report.in_doubt.len()
    ));
    // The old primary rejoins before the way back (restore) switches over again.
    day2::role_ok(cx, &a, "slave", &path, &[])?;
    day2::role_ok(cx, cx.cluster.backup(), "backup", &path, &[])?;
    Ok(())
}
