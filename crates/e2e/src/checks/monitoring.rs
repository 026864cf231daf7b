//! Monitoring (issue 18): every scrape target up over verified TLS, an unauthenticated scrape
//! refused, every endpoint bound to its node's address only; the alert rules pass promtool's
//! checks and unit tests; four faults at once (standby stopped, Barman's receive-wal stopped,
//! archive_command failing, a corrupted backup failing the restore drill) each raise their
//! alert, one reaches a webhook receiver inside the lab through Alertmanager, and all clear after
//! the repair; a rerun of every role changes nothing and restarts no daemon.

use std::time::{Duration, Instant};

use crate::checks::drill;
use crate::faults;
use crate::prom::{self, Alert};
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Result};

/// The promtool unit tests of the rules (rendered with the default thresholds).
const RULE_TESTS: &str = include_str!("../../../../config/monitoring/pgnode-alerts.test.yml");
/// The webhook listener the check starts on the backup node (bounded by systemd-run).
const LISTENER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[3], "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;
const HOOK_UNIT: &str = "pgnode-e2e-webhook";
const HOOK_FILE: &str = "/var/tmp/pgnode-e2e-webhook.jsonl";
const HOOK_PORT: &str = "9199";
const AUTH_KEYS: &str = "/var/lib/barman/.ssh/authorized_keys";
/// The four faults' alerts.
const ALERTS: [&str; 4] = [
    "PgnodeStandbyNotStreaming",
    "PgnodeReceiveWalStopped",
    "PgnodeArchivingFailing",
    "PgnodeRestoreDrillFailed",
];

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "every target up over verified TLS, no anonymous scrape, each fault raises its alert (one reaches a webhook) and clears after the repair, a rerun restarts nothing",
    );
    let backup = cx.cluster.backup();
    targets_up(cx, backup)?;
    endpoints_locked(cx)?;
    promtool(cx, backup)?;
    rerun_restarts_nothing(cx)?;
    let layout = cx.cluster.target().layout();
    let config = webhook_config(cx, backup)?;
    let result = faults_raise_alerts(cx, backup, &config);
    // Whatever happened: the cluster's own config and no listener for the next checks.
    let restored = faults::converge_with(backup, &layout.config);
    let _ = backup.run(&["systemctl", "stop", HOOK_UNIT]);
    let _ = backup.run(&["rm", "-f", &config, HOOK_FILE]);
    result?;
    restored?;
    faults::all_healthy(cx, faults::HEAL)
}

fn targets_up(cx: &Ctx, backup: &Node) -> Result<()> {
    let c = &cx.cluster.config;
    let want = c.nodes().len() + c.pg_nodes().len() + 2;
    let t = wait_for("every scrape target up", Duration::from_secs(180), || {
        let t = prom::targets(backup)?;
        let down: Vec<String> = t
            .iter()
            .filter(|x| x.2 != "up")
            .map(|x| format!("{} {} {}: {}", x.0, x.1, x.2, x.3))
            .collect();
        if t.len() == want && down.is_empty() {
            Ok(Some(t))
        } else {
            pending(format!("{} of {want} targets; not up: {down:?}", t.len()))
        }
    })?;
    cx.note(format!(
        "{} targets up over TLS verified against the cluster CA: {}",
        t.len(),
        t.iter()
            .map(|x| format!("{} {}", x.0, x.1))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let data = prom::api(
        backup,
        "/api/v1/query?query=pgnode_status_timestamp_seconds",
    )?;
    let n = data["result"].as_array().map_or(0, Vec::len);
    ensure(
        n == c.nodes().len(),
        format!(
            "pgnode_status_timestamp_seconds from {n} nodes, not {}",
            c.nodes().len()
        ),
        data.to_string(),
    )?;
    cx.note(format!(
        "pgnode's own metrics (textfile collector) from all {n} nodes"
    ));
    Ok(())
}

/// No credentials: 401 everywhere; listeners on the node's address only (nothing on 0.0.0.0,
/// and no Alertmanager cluster port).
fn endpoints_locked(cx: &Ctx) -> Result<()> {
    let backup = cx.cluster.backup();
    for n in cx.cluster.nodes() {
        let mut ports = vec!["9100"];
        if n.role == pgnode_core::config::Role::Backup {
            ports.extend(["9090", "9093"]);
        } else {
            ports.push("9187");
        }
        for p in &ports {
            let url = format!("https://{}:{p}/metrics", n.address);
            let (status, body) = prom::get(backup, &url, false)?;
            ensure(
                status == "401",
                format!("{url} without credentials answers {status}, not 401"),
                body,
            )?;
        }
        let ss = n.ok(&["ss", "-Hltn"])?;
        let wild: Vec<&str> = ss
            .lines()
            .filter(|l| {
                ["9100", "9187", "9090", "9093", "9094"].iter().any(|p| {
                    l.contains(&format!("*:{p} "))
                        || l.contains(&format!("0.0.0.0:{p} "))
                        || l.contains(&format!("]:{p} "))
                })
            })
            .collect();
        ensure(
            wild.is_empty(),
            format!("{n}: a monitoring port listens beyond {}", n.address),
            wild.join("\n"),
        )?;
    }
    cx.note("every endpoint refuses a scrape without credentials (401) and listens on its node's address only");
    Ok(())
}

fn promtool(cx: &Ctx, backup: &Node) -> Result<()> {
    backup.ok(&[
        "promtool",
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
    ])?;
    backup.ok(&[
        "promtool",
        "check",
        "rules",
        "/etc/prometheus/pgnode-alerts.yml",
    ])?;
    let test = "/tmp/pgnode-alerts.test.yml";
    let out = backup.run_stdin(&["tee", test], RULE_TESTS.as_bytes())?;
    ensure(
        out.success(),
        format!("cannot write {test}"),
        out.combined(),
    )?;
    let out = backup.run(&["promtool", "test", "rules", test])?;
    ensure(out.success(), "promtool test rules failed", out.combined())?;
    cx.note("promtool check config, check rules and test rules pass on the rendered files");
    Ok(())
}

fn daemon_starts(n: &Node) -> Result<String> {
    let units: &[&str] = if n.role == pgnode_core::config::Role::Backup {
        &[
            "prometheus-node-exporter",
            "prometheus",
            "prometheus-alertmanager",
            "pgnode-metrics.timer",
        ]
    } else {
        &[
            "prometheus-node-exporter",
            "prometheus-postgres-exporter",
            "pgnode-metrics.timer",
        ]
    };
    let mut argv = vec!["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic"];
    argv.extend(units);
    n.ok(&argv)
}

fn rerun_restarts_nothing(cx: &Ctx) -> Result<()> {
    for n in cx.cluster.nodes() {
        let before = daemon_starts(n)?;
        let out = faults::rerun_ok(n)?;
        ensure(
            out.contains(" changed=0 "),
            format!("a rerun on {n} changed something"),
            out,
        )?;
        let after = daemon_starts(n)?;
        ensure(
            before == after,
            format!("a rerun on {n} restarted a monitoring daemon"),
            format!("{before}\n->\n{after}"),
        )?;
    }
    cx.note("a rerun of every role: changed=0, no monitoring daemon restarted");
    Ok(())
}

/// A config beside the cluster's with a webhook receiver on the backup node, and the listener.
fn webhook_config(cx: &Ctx, backup: &Node) -> Result<String> {
    let hook = format!("http://{}:{HOOK_PORT}/alerts", backup.address);
    let config = faults::test_config(cx, "e2e-monitoring.json", &[])?;
    let text = backup.file(&config)?;
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Failure::new("test config is not JSON", e.to_string()))?;
    v["monitoring"]["webhooks"] = serde_json::json!([hook]);
    // Alerts fire 15 s after their condition instead of the default 60 s: the check waits less,
    // and what it proves (each fault raises its alert) is the same.
    v["monitoring"]["alert_after_seconds"] = serde_json::json!(15);
    let body = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    backup.ok(&["rm", "-f", HOOK_FILE])?;
    let out = backup.run_stdin(&["tee", &config], body.as_bytes())?;
    ensure(
        out.success(),
        format!("cannot write {config}"),
        out.combined(),
    )?;
    let addr = backup.address.to_string();
    let _ = backup.run(&["systemctl", "stop", HOOK_UNIT]);
    backup.ok(&[
        "systemd-run",
        &format!("--unit={HOOK_UNIT}"),
        "--property=RuntimeMaxSec=900",
        "python3",
        "-c",
        LISTENER,
        &addr,
        HOOK_PORT,
        HOOK_FILE,
    ])?;
    // Alertmanager's notification log remembers what each receiver was told: after an earlier
    // run in this lab (whose resolved alerts went nowhere once its webhook was removed) it would
    // hold the same alerts back for repeat_interval. A fresh log, as on a new node.
    backup.ok(&["systemctl", "stop", "prometheus-alertmanager"])?;
    backup.ok(&["rm", "-f", "/var/lib/prometheus/alertmanager/nflog"])?;
    faults::converge_with(backup, &config)?;
    cx.note(format!(
        "Alertmanager sends to the webhook {hook} (a listener the check runs, at most 900 s); alerts fire after 15 s ({config})"
    ));
    Ok(config)
}

fn faults_raise_alerts(cx: &Ctx, backup: &Node, _config: &str) -> Result<()> {
    let primary = cx.cluster.primary();
    let standby = faults::first_standby(cx)?;
    let server = cx.cluster.config.barman.server.as_str();
    let t0 = Instant::now();
    // The drill first: it needs its restore point archived, which the faults below prevent.
    let corrupted = drill::corrupt_newest(cx, backup, server)?;
    let out = drill::drill(backup)?;
    ensure(
        !out.success(),
        "the drill of a corrupted backup passed",
        out.combined(),
    )?;
    cx.note(format!(
        "the drill of {corrupted} failed ({:.0}s)",
        t0.elapsed().as_secs_f64()
    ));
    standby.service_stop()?;
    // Barman's cron restarts receive-wal every minute: stopped with it.
    backup.ok(&["systemctl", "stop", "cron"])?;
    let stop = backup.barman(&["receive-wal", "--stop", server])?;
    ensure(
        stop.success(),
        "barman receive-wal --stop failed",
        stop.combined(),
    )?;
    // archive_command cannot log in to the backup node any more.
    backup.ok(&["mv", AUTH_KEYS, &format!("{AUTH_KEYS}.e2e")])?;
    primary.sql("postgres", "select txid_current()")?;
    primary.sql("postgres", "select pg_switch_wal()")?;
    cx.note(format!(
        "faults set {:.0}s after the first: {standby} stopped, receive-wal and cron stopped, archive_command's key refused",
        t0.elapsed().as_secs_f64()
    ));
    let result = await_alerts(cx, backup, t0);
    repair(cx, backup, standby, server, &corrupted)?;
    result?;
    let t1 = Instant::now();
    wait_for(
        "the four alerts to clear after the repair",
        Duration::from_secs(300),
        || {
            let a = prom::alerts(backup)?;
            let still: Vec<&str> = ALERTS
                .iter()
                .copied()
                .filter(|n| a.iter().any(|x| x.name == *n))
                .collect();
            if still.is_empty() {
                Ok(Some(()))
            } else {
                pending(format!("still active: {still:?}"))
            }
        },
    )?;
    cx.note(format!(
        "all four alerts cleared {:.0}s after the repair",
        t1.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn await_alerts(cx: &Ctx, backup: &Node, t0: Instant) -> Result<()> {
    let mut seen: Vec<(String, f64)> = Vec::new();
    let all: Vec<Alert> = wait_for("the four alerts to fire", Duration::from_secs(420), || {
        let a = prom::alerts(backup)?;
        for n in ALERTS {
            if prom::firing(&a, n) && !seen.iter().any(|(s, _)| s == n) {
                seen.push((n.to_string(), t0.elapsed().as_secs_f64()));
            }
        }
        if seen.len() == ALERTS.len() {
            Ok(Some(a))
        } else {
            let names: Vec<String> = a
                .iter()
                .map(|x| format!("{} {}", x.name, x.state))
                .collect();
            pending(format!("firing so far: {seen:?}; all alerts: {names:?}"))
        }
    })?;
    for (n, s) in &seen {
        cx.note(format!("{n} firing {s:.0}s after the first fault"));
    }
    let n = all.iter().filter(|a| a.state == "firing").count();
    cx.note(format!("{n} alerts firing in all"));
    wait_for(
        "an alert at the webhook receiver",
        Duration::from_secs(180),
        || {
            let body = backup.run(&["cat", HOOK_FILE])?.stdout;
            if body.contains("PgnodeStandbyNotStreaming") && body.contains("\"status\":\"firing\"")
            {
                Ok(Some(()))
            } else {
                pending(format!("{} bytes received", body.len()))
            }
        },
    )?;
    cx.note(format!(
        "Alertmanager delivered PgnodeStandbyNotStreaming to the webhook {:.0}s after the faults",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn repair(cx: &Ctx, backup: &Node, standby: &Node, server: &str, corrupted: &str) -> Result<()> {
    let primary = cx.cluster.primary();
    backup.ok(&["systemctl", "start", "cron"])?;
    backup.ok(&["mv", &format!("{AUTH_KEYS}.e2e"), AUTH_KEYS])?;
    standby.service_start()?;
    // What cron would do within a minute (restart receive-wal), now; and a new WAL file wakes
    // the archiver, which otherwise retries a minute after its last failure.
    let cron = backup.barman(&["-q", "cron"])?;
    ensure(cron.success(), "barman cron failed", cron.combined())?;
    primary.sql("postgres", "select txid_current()")?;
    primary.sql("postgres", "select pg_switch_wal()")?;
    // Barman's cron restarts receive-wal within a minute; a backup before that is refused.
    wait_for(
        &format!("barman check {server}: every line OK"),
        Duration::from_secs(240),
        || {
            let out = backup.barman(&["check", server])?;
            if out.success() {
                Ok(Some(()))
            } else {
                pending(out.combined())
            }
        },
    )?;
    // A fresh backup, the corrupted one deleted, and the drill restores the fresh one (the
    // newest): the older backups are not this check's to vouch for.
    let fresh = drill::fresh_backup(primary, backup, server, &[])?;
    // An earlier drill may have kept it (`barman keep`): released first, as the drill check does.
    backup.barman(&["keep", "--release", server, corrupted])?;
    let del = backup.barman(&["delete", server, corrupted])?;
    if !del.success() {
        return fail(
            format!("barman delete {server} {corrupted} failed"),
            del.combined(),
        );
    }
    let out = drill::drill(backup)?;
    ensure(
        out.success(),
        "the drill after the repair failed",
        out.combined(),
    )?;
    cx.note(format!(
        "repaired: cron started, the key back, {standby} started, barman check OK, backup {fresh} taken, {corrupted} deleted, a drill passed"
    ));
    Ok(())
}
