//! Planned switchover, driven by the config, under load. Promise: every commit the ledger saw
//! acknowledged on the old primary is on the new one; the old primary streams from the new one
//! through its own slot; Barman follows (`barman check` all OK, a new DONE backup). Then the
//! same back to the original topology. After each, one more run of every role changes nothing
//! and restarts nothing. Prints `switchover downtime N.N s`: from the last acknowledged commit
//! on the old primary to the first commit on the new one.

use std::time::Duration;

use super::day2::{self, FirstWrite};
use crate::{ensure, fail, Ctx, Ledger, Node, Pgbench, Result};

const LEDGER: &str = "e2e_switchover";
const FIRST: &str = "e2e_switchover_first";

pub fn run(cx: &mut Ctx) -> Result<()> {
    day2::with_restore(cx, |cx| {
        let orig = day2::original(cx)?;
        let (a, b) = match cx.cluster.standbys().first() {
            Some(s) => (cx.cluster.primary().clone(), (*s).clone()),
            None => return fail("the config has no standby to switch over to", ""),
        };
        let there = day2::with_master(&orig, &b.name);
        let path = day2::write_config(cx, day2::SWITCHED, &there)?;
        let d1 = switch(cx, &a, &b, &there, &path)?;
        day2::converged(cx, &there, &path, &format!("the switchover to {b}"))?;
        let back = day2::config_path(cx);
        let d2 = switch(cx, &b, &a, &orig, &back)?;
        day2::converged(cx, &orig, &back, &format!("the switch back to {a}"))?;
        cx.note(format!(
            "switchover downtime {:.1} s (median of {d1:.1} s and {d2:.1} s)",
            (d1 + d2) / 2.0
        ));
        Ok(())
    })
}

/// One switchover from `old` to `new` under load; returns the downtime in seconds.
fn switch(cx: &Ctx, old: &Node, new: &Node, config: &serde_json::Value, path: &str) -> Result<f64> {
    old.sql(
        "postgres",
        &format!("drop table if exists {FIRST}; create table {FIRST} (node text, at timestamptz default clock_timestamp())"),
    )?;
    let before = day2::newest_done(cx)?;
    let pgbench = Pgbench::start(old, 120, 2)?;
    let ledger = Ledger::start_bounded(old, LEDGER, 180, 1_000_000)?;
    old.poll_until(
        "postgres",
        &format!("select count(*) >= 50 from {LEDGER}"),
        "t",
        Duration::from_secs(60),
    )?;
    // The new primary's table must have arrived before the probe writes into it.
    new.poll_until(
        "postgres",
        &format!("select to_regclass('{FIRST}') is not null"),
        "t",
        Duration::from_secs(60),
    )?;
    let probe = FirstWrite::start(new, FIRST, 300);
    day2::converge(cx, config, path, &old.name, &[])?;
    let report = ledger.stop()?;
    // pgbench loses its connections when the old primary shuts down: expected, not a failure.
    let bench = match pgbench.finish() {
        Ok(r) => format!("{} transactions", r.transactions),
        Err(e) => format!("ended with the old primary ({})", e.message),
    };
    let first = probe.at()?;
    let Some(last) = report.acked.iter().map(|a| a.at).reduce(f64::max) else {
        return fail(
            "the ledger saw no acknowledged commit on the old primary",
            "",
        );
    };
    let present = report.verify_on(new, LEDGER)?;
    cx.note(format!(
        "{old} -> {new}: {} commits acknowledged on {old}, all {present} on {new}; pgbench {bench}",
        report.acked.len()
    ));
    ensure(
        first > last,
        "the new primary committed before the old one stopped",
        format!("last on old {last}, first on new {first}"),
    )?;
    let downtime = first - last;
    cx.note(format!(
        "switchover downtime {downtime:.1} s ({old} -> {new})"
    ));
    day2::streams_from(old, new)?;
    cx.note(format!("{old} streams from {new}"));
    let backup = day2::barman_follows(cx, &before)?;
    cx.note(format!(
        "barman check OK against {new}; new backup {backup} DONE"
    ));
    Ok(downtime)
}
