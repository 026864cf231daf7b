//! What the Day-2 checks (switchover, failover, zero-loss, standbys, pitr-timeline) share: a
//! topology is a config file written beside the cluster's (`switched-PID.e2e.json`, git-ignored,
//! the same secrets beside it), roles run against it in the documented order, and the way back to the original
//! topology, run whether the check passed or not.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::target::{Command, Output};
use crate::text::{flat, tail};
use crate::{ensure, fail, pending, wait_for, Ctx, Failure, Node, Result};

/// The config file name the checks write beside the cluster's.
pub const SWITCHED: &str = "switched.e2e.json";

/// The cluster's config path on the nodes, and the directory it is in.
pub fn config_path(cx: &Ctx) -> String {
    cx.cluster.target().layout().config
}

fn sibling(cx: &Ctx, name: &str) -> String {
    let name = crate::per_run(name);
    let p = config_path(cx);
    match p.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

/// The cluster's config as JSON, read from the primary (what the nodes read).
pub fn original(cx: &Ctx) -> Result<Value> {
    let text = cx.cluster.primary().file(&config_path(cx))?;
    serde_json::from_str(&text).or_else(|e| fail(format!("the config is not JSON: {e}"), text))
}

/// `config` with `new_master` as the master and the current master as a slave.
pub fn with_master(config: &Value, new_master: &str) -> Value {
    let mut c = config.clone();
    if let Some(nodes) = c["nodes"].as_array_mut() {
        for n in nodes {
            let role = n["role"].as_str().unwrap_or_default().to_string();
            if n["name"] == new_master {
                n["role"] = "master".into();
            } else if role == "master" || role == "primary" {
                n["role"] = "slave".into();
            }
        }
    }
    c
}

/// `config` with one client (`clients[]`): role and database `name`, connecting from `host`.
pub fn with_client(config: &Value, name: &str, host: &str) -> Value {
    let mut c = config.clone();
    c["clients"] = serde_json::json!([{ "user": name, "database": name, "hosts": [host] }]);
    c
}

/// Writes `config` as `name` beside the cluster's config on every node (the lab shares one
/// /vagrant, Vagrant's rsync folders do not) and returns its path on the nodes.
pub fn write_config(cx: &Ctx, name: &str, config: &Value) -> Result<String> {
    let path = sibling(cx, name);
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    for n in cx.cluster.nodes() {
        let out = n.exec(&Command::new(&["tee", &path]).stdin(text.as_bytes()))?;
        ensure(
            out.success(),
            format!("cannot write {path} on {n}"),
            out.combined(),
        )?;
    }
    Ok(path)
}

/// `pgnode --role ROLE --config CONFIG EXTRA...` on `node` (any exit status).
pub fn role_run(node: &Node, role: &str, config: &str, extra: &[&str]) -> Result<Output> {
    let mut argv = vec!["pgnode", "--role", role, "--config", config];
    argv.extend_from_slice(extra);
    node.exec(&Command::new(&argv).timeout(Duration::from_secs(900)))
}

/// Like [`role_run`], failing the check when the role fails; notes its recap line.
pub fn role_ok(cx: &Ctx, node: &Node, role: &str, config: &str, extra: &[&str]) -> Result<String> {
    let t = Instant::now();
    let out = role_run(node, role, config, extra)?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("pgnode --role {role} {} failed on {node}", extra.join(" ")),
        tail(&text, 30),
    )?;
    let recap = text
        .lines()
        .rfind(|l| l.starts_with("recap:"))
        .unwrap_or("");
    cx.note(format!(
        "{node}: role {role} {} {recap} ({:.1}s)",
        extra.join(" "),
        t.elapsed().as_secs_f64()
    ));
    Ok(text)
}

/// The node names of `config` playing `role`, in config order.
pub fn names_with_role(config: &Value, role: &str) -> Vec<String> {
    let alias = match role {
        "master" => "primary",
        "slave" => "standby",
        other => other,
    };
    config["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n["role"] == role || n["role"] == alias)
                .filter_map(|n| n["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn node<'a>(cx: &'a Ctx, name: &str) -> Result<&'a Node> {
    cx.cluster
        .node(name)
        .ok_or_else(|| Failure::new(format!("no node {name} in the cluster"), ""))
}

/// Converges every node for `config` in the documented order: the old primary first (it stops
/// cleanly and follows; or rewinds), then the new master (it promotes), the other standbys,
/// then the backup node. `extra_master` goes to the master role (e.g. `--force-promote`).
pub fn converge(
    cx: &Ctx,
    config: &Value,
    path: &str,
    old: &str,
    extra_master: &[&str],
) -> Result<()> {
    let masters = names_with_role(config, "master");
    let slaves = names_with_role(config, "slave");
    if slaves.iter().any(|s| s == old) {
        role_ok(cx, node(cx, old)?, "slave", path, &[])?;
    }
    for m in &masters {
        role_ok(cx, node(cx, m)?, "master", path, extra_master)?;
    }
    for s in slaves.iter().filter(|s| *s != old) {
        role_ok(cx, node(cx, s)?, "slave", path, &[])?;
    }
    role_ok(cx, cx.cluster.backup(), "backup", path, &[])?;
    Ok(())
}

/// One more run of every role for `config` (master, slaves, backup): each must end converged,
/// its recap `changed=0 failed=0`, and no PostgreSQL may restart. `after` names what came
/// before (a switchover, a failover with rejoin, a switch back) for the messages.
pub fn converged(cx: &Ctx, config: &Value, path: &str, after: &str) -> Result<()> {
    let backup = cx.cluster.backup().name.clone();
    let pg: Vec<&Node> = cx
        .cluster
        .nodes()
        .into_iter()
        .filter(|n| n.name != backup)
        .collect();
    let start = |n: &Node| n.sql("postgres", "select pg_postmaster_start_time()");
    let before: Vec<String> = pg.iter().map(|n| start(n)).collect::<Result<_>>()?;
    let mut order: Vec<(String, &str)> = names_with_role(config, "master")
        .into_iter()
        .map(|m| (m, "master"))
        .collect();
    order.extend(
        names_with_role(config, "slave")
            .into_iter()
            .map(|s| (s, "slave")),
    );
    order.push((backup, "backup"));
    for (name, role) in &order {
        let n = node(cx, name)?;
        let text = role_ok(cx, n, role, path, &[])?;
        let recap = text
            .lines()
            .rfind(|l| l.starts_with("recap:"))
            .unwrap_or("");
        ensure(
            super::idempotence::recap_unchanged(recap, role),
            format!(
                "{n}: one more run of role {role} after {after} changed something (not converged)"
            ),
            tail(&text, 30),
        )?;
    }
    for (n, was) in pg.iter().zip(&before) {
        let now = start(n)?;
        ensure(
            &now == was,
            format!("PostgreSQL on {n} restarted during the run after {after}"),
            format!("started {was} before, {now} after"),
        )?;
    }
    cx.note(format!(
        "after {after}, one more run of every role: changed=0 on {} nodes, no PostgreSQL restart",
        order.len()
    ));
    Ok(())
}

/// Which PostgreSQL node runs as a primary now (None when none answers as one).
pub fn current_primary(cx: &Ctx) -> Option<String> {
    cx.cluster
        .nodes()
        .into_iter()
        .filter(|n| n.name != cx.cluster.backup().name)
        .find(|n| matches!(n.try_sql("postgres", "select pg_is_in_recovery()"), Ok(o) if o.success() && o.stdout.trim() == "f"))
        .map(|n| n.name.clone())
}

/// Brings the cluster back to its original topology, whatever state a check left: the current
/// primary's config first (a downed original master rejoins it), then a switchover back.
pub fn restore(cx: &Ctx) -> Result<()> {
    let orig = original(cx)?;
    let master = cx.cluster.primary().name.clone();
    let cluster_cfg = config_path(cx);
    match current_primary(cx) {
        Some(p) if p == master => converge(cx, &orig, &cluster_cfg, "", &[]),
        Some(p) => {
            let now = with_master(&orig, &p);
            let path = write_config(cx, SWITCHED, &now)?;
            converge(cx, &now, &path, &master, &[])?;
            converge(cx, &orig, &cluster_cfg, &p, &[])
        }
        None => fail(
            "no node answers as a primary: cannot restore the topology",
            "",
        ),
    }
}

/// Runs `body`, then restores the original topology even when it failed (its failure wins).
pub fn with_restore(cx: &mut Ctx, body: impl FnOnce(&mut Ctx) -> Result<()>) -> Result<()> {
    let r = body(cx);
    let back = restore(cx);
    match (r, back) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(Failure::new(
            format!("restoring the topology failed: {}", e.message),
            e.evidence,
        )),
        (Ok(()), Ok(())) => {
            cx.note("topology restored: the original master is the primary again");
            Ok(())
        }
    }
}

/// Polls until `standby` streams from `primary` (seen in the primary's pg_stat_replication).
pub fn streams_from(standby: &Node, primary: &Node) -> Result<()> {
    let q = format!(
        "select count(*) from pg_stat_replication where client_addr = '{}' and state = 'streaming'",
        standby.address
    );
    primary.poll_until("postgres", &q, "1", Duration::from_secs(120))
}

/// `barman check` all OK and a DONE backup newer than `before` (a backup id, or "" for any).
pub fn barman_follows(cx: &Ctx, before: &str) -> Result<String> {
    let b = cx.cluster.backup();
    let server = cx.cluster.config.barman.server.as_str();
    let out = b.barman(&["check", server])?;
    ensure(
        out.success(),
        "barman check is not all OK after the change",
        out.combined(),
    )?;
    let newest = newest_done(cx)?;
    ensure(
        newest.as_str() > before,
        format!("no new DONE backup after the change (newest is still {newest})"),
        b.barman(&["list-backup", server])?.combined(),
    )?;
    Ok(newest)
}

/// The newest DONE backup id ("" when none).
pub fn newest_done(cx: &Ctx) -> Result<String> {
    let server = cx.cluster.config.barman.server.as_str();
    let out = cx.cluster.backup().barman(&["list-backup", server])?;
    Ok(out
        .stdout
        .lines()
        .filter(|l| !l.contains("FAILED") && !l.contains("STARTED") && !l.contains("WAITING"))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .max()
        .unwrap_or_default())
}

/// Waits until `node` answers as a primary.
pub fn is_primary(node: &Node) -> Result<()> {
    wait_for(
        &format!("{node} to be a primary"),
        Duration::from_secs(120),
        || {
            let o = node.try_sql("postgres", "select pg_is_in_recovery()")?;
            if o.success() && o.stdout.trim() == "f" {
                Ok(Some(()))
            } else {
                pending(flat(&o.combined()))
            }
        },
    )
}
