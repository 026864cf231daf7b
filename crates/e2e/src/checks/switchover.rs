//! Planned switchover, driven by the config, under load, with an application that follows the
//! primary. The application is a client of the config (`clients[]`, its role and database, on
//! the backup node); it writes through the read-write connection string `pgnode status` prints
//! and is never reconfigured. Promise: every commit it saw acknowledged is on the new primary;
//! after the switchover it commits on the new primary through the same string; the old primary
//! streams from the new one through its own slot; Barman follows (`barman check` all OK, a new
//! DONE backup). Then the same back to the original topology. After each, one more run of every
//! role changes nothing and restarts nothing. Prints `switchover downtime N.N s`: from the
//! application's last acknowledged commit on the old primary to its first on the new one.

use std::time::Duration;

use serde_json::Value;

use super::day2;
use crate::{ensure, fail, Ctx, Ledger, Node, Pgbench, Result};

const LEDGER: &str = "e2e_switchover";
/// The application's role and database.
const APP: &str = "e2e_app";
/// The config with the application, beside the cluster's.
const WITH_APP: &str = "app.e2e.json";
/// Its .pgpass on the node it runs on (0600 in a 0700 directory).
const PASSFILE: &str = "/run/pgnode-e2e-app/pgpass";

pub fn run(cx: &mut Ctx) -> Result<()> {
    day2::with_restore(cx, |cx| {
        let (a, b) = match cx.cluster.standbys().first() {
            Some(s) => (cx.cluster.primary().clone(), (*s).clone()),
            None => return fail("the config has no standby to switch over to", ""),
        };
        let app_node = cx.cluster.backup().clone();
        let orig = day2::with_client(&day2::original(cx)?, APP, &app_node.address.to_string());
        let base = day2::write_config(cx, WITH_APP, &orig)?;
        day2::converge(cx, &orig, &base, "", &[])?;
        let conninfo = read_write_conninfo(&app_node, &base)?;
        passfile(cx, &app_node)?;
        cx.note(format!(
            "the application {APP} on {app_node} connects through `pgnode status`'s read-write string: {conninfo}"
        ));
        let there = day2::with_master(&orig, &b.name);
        let path = day2::write_config(cx, day2::SWITCHED, &there)?;
        let d1 = switch(cx, &a, &b, &there, &path, &conninfo)?;
        day2::converged(cx, &there, &path, &format!("the switchover to {b}"))?;
        let d2 = switch(cx, &b, &a, &orig, &base, &conninfo)?;
        day2::converged(cx, &orig, &base, &format!("the switch back to {a}"))?;
        cx.note(format!(
            "switchover downtime {:.1} s (median of {d1:.1} s and {d2:.1} s)",
            (d1 + d2) / 2.0
        ));
        Ok(())
    })
}

/// The read-write connection string of the application, as `pgnode status --json` prints it
/// on `node` (its exit status is not the point here: the string comes from the config).
fn read_write_conninfo(node: &Node, config: &str) -> Result<String> {
    let out = node.exec(&crate::Command::new(&[
        "pgnode", "status", "--json", "--config", config,
    ]))?;
    let v: Value = serde_json::from_str(&out.stdout).or_else(|e| {
        fail(
            format!("pgnode status --json on {node} is not JSON: {e}"),
            out.combined(),
        )
    })?;
    let found = v["connect"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["user"] == APP)
        .and_then(|c| c["read_write"].as_str())
        .map(String::from);
    match found {
        Some(s) if s.contains("target_session_attrs=read-write") => Ok(s),
        _ => fail(
            format!(
                "pgnode status --json on {node} prints no read-write connection string for {APP}"
            ),
            out.stdout,
        ),
    }
}

/// The application's password from the secrets file on `node` into [`PASSFILE`], by a script
/// that reads it there (never on a command line).
fn passfile(cx: &Ctx, node: &Node) -> Result<()> {
    let secrets = cx.cluster.target().layout().secrets;
    let script = r#"umask 077 && mkdir -p "$(dirname "$3")" && python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.stdout.write("*:*:*:%s:%s\n" % (sys.argv[2], s["passwords"][sys.argv[2]]))
' "$1" "$2" > "$3""#;
    node.ok(&["bash", "-c", script, "passfile", &secrets, APP, PASSFILE])?;
    Ok(())
}

/// One switchover from `old` to `new` under load; returns the application's downtime in seconds.
fn switch(
    cx: &Ctx,
    old: &Node,
    new: &Node,
    config: &serde_json::Value,
    path: &str,
    conninfo: &str,
) -> Result<f64> {
    old.sql(
        APP,
        &format!("drop table if exists {LEDGER}; create table {LEDGER} (id bigint primary key, at timestamptz not null default clock_timestamp()); alter table {LEDGER} owner to {APP}"),
    )?;
    new.poll_until(
        APP,
        &format!("select to_regclass('{LEDGER}') is not null"),
        "t",
        Duration::from_secs(60),
    )?;
    let before = day2::newest_done(cx)?;
    let pgbench = Pgbench::start(old, 120, 2)?;
    let app_node = cx.cluster.backup();
    let ledger = Ledger::start_following(app_node, LEDGER, conninfo, PASSFILE, 300, 1_000_000)?;
    old.poll_until(
        APP,
        &format!("select count(*) >= 50 from {LEDGER}"),
        "t",
        Duration::from_secs(60),
    )?;
    day2::converge(cx, config, path, &old.name, &[])?;
    // The application commits on the new primary without being told anything.
    let count = |n: &Node| n.sql(APP, &format!("select count(*) from {LEDGER}"));
    let c0: u64 = count(new)?.parse().unwrap_or(0);
    new.poll_until(
        APP,
        &format!("select count(*) >= {} from {LEDGER}", c0 + 20),
        "t",
        Duration::from_secs(60),
    )?;
    let report = ledger.stop()?;
    // pgbench loses its connections when the old primary shuts down: expected, not a failure.
    let bench = match pgbench.finish() {
        Ok(r) => format!("{} transactions", r.transactions),
        Err(e) => format!("ended with the old primary ({})", e.message),
    };
    let (old_addr, new_addr) = (old.address.to_string(), new.address.to_string());
    let server = |id: u64| report.servers.get(&id).map_or("?", String::as_str);
    let elsewhere: Vec<String> = report
        .acked
        .iter()
        .filter(|a| server(a.id) != old_addr && server(a.id) != new_addr)
        .map(|a| format!("{} by {}", a.id, server(a.id)))
        .collect();
    ensure(
        elsewhere.is_empty(),
        "commits acknowledged by neither the old nor the new primary",
        elsewhere.join(", "),
    )?;
    let on_old: Vec<_> = report
        .acked
        .iter()
        .filter(|a| server(a.id) == old_addr)
        .collect();
    let on_new: Vec<_> = report
        .acked
        .iter()
        .filter(|a| server(a.id) == new_addr)
        .collect();
    let (Some(last), Some(first)) = (on_old.last(), on_new.first()) else {
        return fail(
            format!(
                "the application did not commit on both primaries through one connection string ({} on {old}, {} on {new})",
                on_old.len(),
                on_new.len()
            ),
            format!("connection string: {conninfo}"),
        );
    };
    ensure(
        first.id > last.id && first.at > last.at,
        "the application committed on the new primary before its last commit on the old one",
        format!(
            "last on {old}: id {} at {}; first on {new}: id {} at {}",
            last.id, last.at, first.id, first.at
        ),
    )?;
    let present = report.verify_in(new, APP, LEDGER)?;
    cx.note(format!(
        "{old} -> {new}: the application committed {} on {old}, then {} on {new} through the same string ({} in doubt at the cut); all {present} acknowledged commits on {new}; pgbench {bench}",
        on_old.len(),
        on_new.len(),
        report.in_doubt.len()
    ));
    let downtime = first.at - last.at;
    cx.note(format!(
        "switchover downtime {downtime:.1} s ({old} -> {new}, as the application saw it)"
    ));
    day2::streams_from(old, new)?;
    cx.note(format!("{old} streams from {new}"));
    let backup = day2::barman_follows(cx, &before)?;
    cx.note(format!(
        "barman check OK against {new}; new backup {backup} DONE"
    ));
    Ok(downtime)
}
