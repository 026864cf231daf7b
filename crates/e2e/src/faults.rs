//! Fault drills (issue 9): the hooks a target offers to break the cluster on purpose (a node's
//! link, its power), and what every `fault-*` check shares: its promise stated first, load on
//! the primary throughout (pgbench and the acknowledged-commit ledger), every node's
//! `pgnode status` healthy at the end, and one `fault-table:` evidence line that
//! `pgnode-e2e --fault-table LOG` turns into the README's table.

use std::io;
use std::time::{Duration, Instant};

use crate::load::{Ledger, LedgerReport, Pgbench};
use crate::target::{default_timeout, Lab, Output};
use crate::{fail, pending, wait_for, Ctx, Node, Result};

/// What a target can do to its nodes beyond running commands. Each call is bounded.
pub trait Faults: Send + Sync {
    /// Cuts (`up = false`) or restores the node's network link: a partition of that node alone.
    fn link(&self, node: &str, up: bool) -> io::Result<Output>;
    /// Powers the node off cleanly (its disk is kept).
    fn power_off(&self, node: &str) -> io::Result<Output>;
    /// Hard power-off: no shutdown at all.
    fn kill(&self, node: &str) -> io::Result<Output>;
    /// Boots a powered-off node again on its existing disk.
    fn boot(&self, node: &str) -> io::Result<Output>;
}

impl Faults for Lab {
    fn link(&self, node: &str, up: bool) -> io::Result<Output> {
        self.hook(&["link", node, if up { "up" } else { "down" }])
    }
    fn power_off(&self, node: &str) -> io::Result<Output> {
        self.hook(&["stop", node])
    }
    fn kill(&self, node: &str) -> io::Result<Output> {
        self.hook(&["kill", node])
    }
    fn boot(&self, node: &str) -> io::Result<Output> {
        self.hook(&["start", node])
    }
}

impl Lab {
    /// `provision/lab VERB NODE [ARG]`, bounded by the default command timeout.
    fn hook(&self, args: &[&str]) -> io::Result<Output> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        crate::process::run_bounded(&self.local(&args), None, default_timeout())
    }
}

/// Undoes a fault if the drill ends early (a failed step returns with `?`): boots the node
/// again, or brings its link back, so that the checks after it find the cluster whole. The
/// drill calls [`Undo::done`] once it repaired the fault itself.
pub struct Undo<'a> {
    hooks: &'a dyn Faults,
    node: String,
    link: bool,
    armed: bool,
}

impl<'a> Undo<'a> {
    /// Boots `node` again on drop unless done.
    pub fn power(hooks: &'a dyn Faults, node: &str) -> Undo<'a> {
        Undo {
            hooks,
            node: node.to_string(),
            link: false,
            armed: true,
        }
    }
    /// Brings `node`'s link back on drop unless done.
    pub fn link(hooks: &'a dyn Faults, node: &str) -> Undo<'a> {
        Undo {
            hooks,
            node: node.to_string(),
            link: true,
            armed: true,
        }
    }
    /// The drill repaired the fault itself.
    pub fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = if self.link {
                self.hooks.link(&self.node, true)
            } else {
                self.hooks.boot(&self.node)
            };
        }
    }
}

/// The target's fault hooks. Err: this target has none (the drill cannot run there).
pub fn hooks<'a>(cx: &Ctx<'a>) -> Result<&'a dyn Faults> {
    let target = cx.cluster.target();
    match target.faults() {
        Some(f) => Ok(f),
        None => fail(
            format!(
                "target {} has no fault hooks (link down, power off/on): run this drill on the lab",
                target.name()
            ),
            "",
        ),
    }
}

/// Runs one hook and fails with its output unless it succeeded.
pub fn hook(what: &str, r: io::Result<Output>) -> Result<()> {
    match r {
        Ok(o) if o.success() => Ok(()),
        Ok(o) => fail(format!("fault hook failed: {what}"), o.combined()),
        Err(e) => fail(format!("fault hook could not run: {what}"), e.to_string()),
    }
}

/// The load every drill runs on the primary: pgbench and the acknowledged-commit ledger.
pub struct Load {
    pgbench: Pgbench,
    ledger: Option<Ledger>,
    report: Option<LedgerReport>,
    table: String,
}

/// Starts pgbench for `seconds` (it stops by itself) and the ledger into `table`.
pub fn start_load(cx: &Ctx, table: &str, seconds: u32) -> Result<Load> {
    let primary = cx.cluster.primary();
    let pgbench = Pgbench::start(primary, seconds, 2)?;
    let ledger = Ledger::start(primary, table)?;
    cx.note(format!(
        "load on {primary}: pgbench {seconds}s x 2 clients, ledger into {table}"
    ));
    Ok(Load {
        pgbench,
        ledger: Some(ledger),
        report: None,
        table: table.to_string(),
    })
}

/// Waits (bounded) until the ledger's `table` on the primary holds at least `rows` rows.
pub fn wait_rows(cx: &Ctx, table: &str, rows: u64) -> Result<()> {
    let primary = cx.cluster.primary();
    let q = format!("select count(*) from {table}");
    let what = format!("{primary}: {rows} rows in {table} from the ledger");
    crate::wait_for(&what, std::time::Duration::from_secs(60), || {
        let n: u64 = primary.sql("postgres", &q)?.parse().unwrap_or(0);
        if n >= rows {
            return Ok(Some(()));
        }
        crate::pending(format!("{n} rows"))
    })
}

impl Load {
    /// Ends the ledger now and keeps its report: for a drill that powers the primary's machine
    /// off, which would take the ledger's client (in that machine) down mid-line. Every commit
    /// it acknowledged up to this moment must survive the power-off; pgbench writes on.
    pub fn settle_ledger(&mut self, cx: &Ctx) -> Result<()> {
        if let Some(l) = self.ledger.take() {
            let r = l.stop()?;
            cx.note(format!(
                "ledger: {} commits acknowledged before the fault",
                r.acked.len()
            ));
            self.report = Some(r);
        }
        Ok(())
    }

    /// Stops the ledger, waits for pgbench, and proves that no acknowledged commit is missing
    /// on the primary nor (once they caught up) on the standbys. `pgbench_may_fail`: the drill
    /// took the primary away, so pgbench's clients were cut off (noted, not a failure).
    pub fn finish(mut self, cx: &Ctx, pgbench_may_fail: bool) -> Result<LedgerReport> {
        self.settle_ledger(cx)?;
        let Some(report) = self.report.take() else {
            return fail("the ledger left no report", "");
        };
        match self.pgbench.finish() {
            Ok(r) => cx.note(format!(
                "pgbench: {} transactions, {:.0} tps",
                r.transactions, r.tps
            )),
            Err(e) if pgbench_may_fail => {
                cx.note(format!("pgbench cut off by the fault: {}", e.message))
            }
            Err(e) => return Err(e),
        }
        let primary = cx.cluster.primary();
        let n = report.verify_on(primary, &self.table)?;
        cx.note(format!(
            "ledger: {n} acknowledged commits, 0 lost on {primary}"
        ));
        for s in cx.cluster.standbys() {
            let seen = wait_for(
                &format!("{s} to replay the ledger"),
                Duration::from_secs(120),
                || match report.verify_on(s, &self.table) {
                    Ok(n) => Ok(Some(n)),
                    Err(e) => pending(e.to_string()),
                },
            )?;
            cx.note(format!(
                "ledger: {seen} acknowledged commits, 0 lost on {s}"
            ));
        }
        Ok(report)
    }
}

/// Every node's `pgnode status` exits 0 within `timeout`; its output is the evidence otherwise.
pub fn all_healthy(cx: &Ctx, timeout: Duration) -> Result<()> {
    for node in cx.cluster.nodes() {
        node_healthy(node, timeout)?;
    }
    cx.note("pgnode status: every node HEALTHY");
    Ok(())
}

/// One node's `pgnode status` exits 0 within `timeout`.
pub fn node_healthy(node: &Node, timeout: Duration) -> Result<()> {
    wait_for(
        &format!("`pgnode status` on {node} to say HEALTHY"),
        timeout,
        || {
            let out = node.pgnode(&["status"])?;
            if out.success() {
                Ok(Some(()))
            } else {
                pending(out.combined())
            }
        },
    )
}

/// The slot `standby` streams through, from the config.
pub fn standby_slot(cx: &Ctx, standby: &Node) -> Result<String> {
    let slot = cx
        .cluster
        .config
        .standbys()
        .iter()
        .find(|n| n.name.as_str() == standby.name)
        .and_then(|n| n.slot.as_ref().map(|s| s.as_str().to_string()));
    match slot {
        Some(s) => Ok(s),
        None => fail(format!("the config gives standby {standby} no slot"), ""),
    }
}

/// The first standby (the drills break one standby; the others must simply stay healthy).
pub fn first_standby<'a>(cx: &Ctx<'a>) -> Result<&'a Node> {
    match cx.cluster.standbys().first() {
        Some(s) => Ok(s),
        None => fail("the config has no standby: this drill needs one", ""),
    }
}

/// The drill's promise, stated before the fault is caused.
pub fn promise(cx: &Ctx, text: &str) {
    cx.note(format!("promise: {text}"));
}

/// A stopwatch for the recovery time the table reports.
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }
    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// The evidence line the fault table is generated from: `fault-table: FAULT | DOES | ASSERTS |
/// RECOVERY` (seconds, or "none needed" for a fault that is refused rather than repaired).
pub fn table_line(cx: &Ctx, fault: &str, does: &str, asserts: &str, recovery_secs: Option<f64>) {
    let recovery = recovery_secs.map_or("none needed".to_string(), |s| format!("{s:.1}s"));
    cx.note(format!(
        "fault-table: {fault} | {does} | {asserts} | {recovery}"
    ));
}

/// Turns the `fault-table:` lines of a run's log into the README's markdown table, with each
/// check's result (lines of checks that failed are marked so).
pub fn table_from_log(log: &str) -> String {
    let mut rows = Vec::new();
    let mut pending_rows: Vec<Vec<String>> = Vec::new();
    for line in log.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("fault-table:") {
            pending_rows.push(rest.split(" | ").map(|c| c.trim().to_string()).collect());
        } else if let Some(rest) = t.strip_prefix("ok   ").or_else(|| t.strip_prefix("FAIL ")) {
            let ok = t.starts_with("ok");
            let check = rest.split_whitespace().next().unwrap_or("");
            for mut r in pending_rows.drain(..) {
                r.resize(4, String::new());
                if !ok {
                    r[3] = format!("{} (check FAILED)", r[3]);
                }
                rows.push(format!(
                    "| {} | {} | {} | {} | `{check}` |",
                    r[0], r[1], r[2], r[3]
                ));
            }
        }
    }
    let mut out = String::from(
        "| fault | what pgnode does | what the test asserts | measured recovery | check |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

/// Waits until `node` streams from the primary and has replayed what the primary had written
/// when this was called; returns the seconds it took.
pub fn caught_up(cx: &Ctx, node: &Node, timeout: Duration) -> Result<f64> {
    let clock = Clock::start();
    let lsn = cx
        .cluster
        .primary()
        .sql("postgres", "select pg_current_wal_lsn()")?;
    let q = format!(
        "select (select status from pg_stat_wal_receiver) = 'streaming' and pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
    );
    node.poll_until("postgres", &q, "t", timeout)?;
    Ok(clock.secs())
}

/// Fills WAL on the primary by switching segments (one small insert each, so every switch
/// closes a segment) until `mb` megabytes were written since this call. Returns the LSN reached.
pub fn write_wal(primary: &Node, mb: u64) -> Result<String> {
    primary.sql(
        "postgres",
        "create table if not exists e2e_walfill (at timestamptz default now())",
    )?;
    let start = primary.sql("postgres", "select pg_current_wal_lsn()")?;
    let q = format!(
        "insert into e2e_walfill default values; select pg_switch_wal(); \
         select pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}') >= {} * 1048576",
        mb
    );
    wait_for(
        &format!("{primary} to write {mb} MB of WAL"),
        Duration::from_secs(120),
        || {
            let out = primary.sql("postgres", &q)?;
            Ok(out.lines().last().is_some_and(|l| l == "t").then_some(()))
        },
    )?;
    primary.sql("postgres", "select pg_current_wal_lsn()")
}

/// Writes a test config beside the cluster's (so pgnode finds the same secrets): the cluster's
/// config with `postgresql` keys overridden, at `/vagrant/config/NAME`. Returns its path.
pub fn test_config(cx: &Ctx, name: &str, overrides: &[(&str, u64)]) -> Result<String> {
    let primary = cx.cluster.primary();
    let layout = cx.cluster.target().layout();
    let text = primary.file(&layout.config)?;
    let mut v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fail("the cluster config is not JSON", e.to_string()),
    };
    for (k, val) in overrides {
        v["postgresql"][*k] = serde_json::json!(val);
    }
    let dir = layout
        .config
        .rsplit_once('/')
        .map_or(".", |(d, _)| d)
        .to_string();
    let path = format!("{dir}/{}", crate::per_run(name));
    let body = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    let out = primary.run_stdin(&["tee", &path], body.as_bytes())?;
    if !out.success() {
        return fail(format!("cannot write {path}"), out.combined());
    }
    Ok(path)
}

/// Converges `node`'s role with the config at `config` (not the cluster's), expecting success.
pub fn converge_with(node: &Node, config: &str) -> Result<String> {
    let out = node.run(&["pgnode", "--role", node.role.as_str(), "--config", config])?;
    if !out.success() {
        return fail(
            format!(
                "pgnode --role {} --config {config} failed on {node}",
                node.role
            ),
            out.combined(),
        );
    }
    Ok(out.stdout)
}

/// Reruns the role of `node` with the installed binary and the cluster's config, expecting
/// `failed=0`; returns the output. (Not guest.sh: after a reboot /tmp, where Vagrant uploads the
/// binary, may be gone.)
pub fn rerun_ok(node: &Node) -> Result<String> {
    let out = node.pgnode(&["--role", node.role.as_str()])?;
    if !out.success() || !out.stdout.contains(" failed=0 ") {
        return fail(
            format!(
                "rerunning the {} role on {node} did not converge",
                node.role
            ),
            out.combined(),
        );
    }
    Ok(out.combined())
}

/// How long drills wait for a node to be healthy again after the fault is repaired: Barman's
/// cron restarts receive-wal once a minute, so a minute and a half plus margin.
pub const HEAL: Duration = Duration::from_secs(150);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_comes_from_the_evidence_lines_with_each_check_result() {
        let log = "== fault-a\n    promise: x\n    fault-table: standby down | waits | streams | 3.6s\nok   fault-a (37.3s)\n\
                   == fault-b\n    fault-table: slot lost | re-clones | lost; bounded | 23.1s\n    FAIL: boom\nFAIL fault-b (51.5s)\n";
        let t = table_from_log(log);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "| standby down | waits | streams | 3.6s | `fault-a` |"
        );
        assert_eq!(
            lines[3],
            "| slot lost | re-clones | lost; bounded | 23.1s (check FAILED) | `fault-b` |"
        );
    }
}
