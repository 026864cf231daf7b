//! Disaster recovery from Barman alone: with numbered rows committed and their WAL archived,
//! the master's and the standbys' data directories are lost (services stopped, directories
//! moved aside by hand); `pgnode restore --to-node master` on the master, then the roles in
//! order, must bring back a primary with every archived row, re-cloned standbys that stream,
//! `barman check` all OK and a healthy `pgnode status` everywhere. Last in the registry: if it
//! breaks the cluster, no other check is affected.

use std::time::Duration;

use super::restore::wait_archived;
use crate::text::flat;
use crate::{ensure, pending, token, wait_for, Ctx, Node, Result};

const ROWS: u32 = 1000;

pub fn run(cx: &mut Ctx) -> Result<()> {
    let cluster = cx.cluster;
    let (primary, backup) = (cluster.primary(), cluster.backup());
    let server = cluster.config.barman.server.as_str();
    refusals(cx, primary)?;
    let tok = token();
    write_rows(primary, &tok)?;
    let seg = primary.sql("postgres", "select pg_walfile_name(pg_switch_wal())")?;
    wait_archived(backup, server, &seg)?;
    cx.note(format!(
        "{ROWS} rows tagged {tok} committed; WAL {seg} archived by Barman"
    ));
    ensure_backup(backup, server)?;
    for n in std::iter::once(primary).chain(cluster.standbys()) {
        lose_data_directory(cx, n, &tok)?;
    }
    let out = primary.pgnode(&["restore", "--to-node", &primary.name])?;
    ensure(
        out.success() && out.stdout.contains("promoted: timeline "),
        "pgnode restore --to-node failed or did not report the promotion",
        out.combined(),
    )?;
    for l in out
        .stdout
        .lines()
        .filter(|l| l.contains("promoted") || l.contains("WAL files"))
    {
        cx.note(l.trim());
    }
    for n in cluster.nodes() {
        let out = n.provision()?;
        ensure(
            out.success(),
            format!("the {} role failed after the restore", n.role),
            flat(&out.combined()),
        )?;
    }
    let q = format!("select count(*) from e2e_disaster where token = '{tok}'");
    primary.poll_until("postgres", &q, &ROWS.to_string(), Duration::from_secs(10))?;
    for s in cluster.standbys() {
        s.poll_until("postgres", &q, &ROWS.to_string(), Duration::from_secs(180))?;
        s.poll_until(
            "postgres",
            "select status from pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(180),
        )?;
    }
    cx.note(format!(
        "all {ROWS} archived rows on the primary and every standby; standbys stream"
    ));
    barman_check_ok(backup, server)?;
    for n in cluster.nodes() {
        wait_for(
            &format!("pgnode status on {} to be healthy", n.name),
            Duration::from_secs(180),
            || {
                let out = n.pgnode(&["status"])?;
                if out.success() {
                    return Ok(Some(()));
                }
                pending(out.combined())
            },
        )?;
    }
    cx.note("barman check all OK; pgnode status healthy on every node");
    Ok(())
}

/// Bad usage exits 2; a running server refuses (exit 1) and is left untouched.
fn refusals(cx: &Ctx, primary: &Node) -> Result<()> {
    for (node, name) in cx
        .cluster
        .standbys()
        .iter()
        .map(|s| (*s, primary.name.as_str()))
        .chain(
            cx.cluster
                .standbys()
                .iter()
                .map(|s| (primary, s.name.as_str())),
        )
        .chain([(primary, "no-such-node")])
    {
        let out = node.pgnode(&["restore", "--to-node", name])?;
        ensure(
            out.code == Some(2),
            format!(
                "pgnode restore --to-node {name} on {} should exit 2",
                node.name
            ),
            out.combined(),
        )?;
    }
    let out = primary.pgnode(&["restore", "--to-node", &primary.name])?;
    ensure(
        out.code == Some(1) && out.stderr.contains("running"),
        "pgnode restore --to-node on a running master should refuse",
        out.combined(),
    )?;
    primary.sql("postgres", "select 1")?;
    cx.note("refused: a standby or unknown node (exit 2), the wrong machine (exit 2), a running server (exit 1)");
    Ok(())
}

fn write_rows(primary: &Node, tok: &str) -> Result<()> {
    primary.sql(
        "postgres",
        "create table if not exists e2e_disaster (id int, token text, primary key (token, id))",
    )?;
    // Four separate commits, so the rows span several transactions of the archived WAL.
    for part in 0..4 {
        let (lo, hi) = (part * ROWS / 4 + 1, (part + 1) * ROWS / 4);
        primary.sql(
            "postgres",
            &format!(
                "insert into e2e_disaster select g, '{tok}' from generate_series({lo}, {hi}) g"
            ),
        )?;
    }
    Ok(())
}

/// Simulates losing a node's data directory: stop the server, move the directory aside
/// (never removed: the lab keeps it for inspection).
fn lose_data_directory(cx: &Ctx, n: &Node, tok: &str) -> Result<()> {
    n.service_stop()?;
    let data = format!("/var/lib/postgresql/{}/main", n.major()?);
    let lost = format!("{data}.e2e-lost-{tok}");
    n.ok(&["mv", &data, &lost])?;
    cx.note(format!(
        "{}: stopped PostgreSQL, moved {data} to {lost}",
        n.name
    ));
    Ok(())
}

/// `pgnode restore --to-node` recovers the newest backup: make sure one is DONE.
fn ensure_backup(backup: &Node, server: &str) -> Result<()> {
    let out = backup.barman(&["list-backups", "--minimal", server])?;
    if out.stdout.trim().is_empty() {
        let out = backup.barman(&["backup", "--wait", server])?;
        ensure(out.success(), "barman backup failed", out.combined())?;
    }
    Ok(())
}

fn barman_check_ok(backup: &Node, server: &str) -> Result<()> {
    wait_for(
        "barman check to be all OK",
        Duration::from_secs(240),
        || {
            // Barman's cron starts receive-wal on the new timeline; `barman cron` does it now.
            let _ = backup.barman(&["cron"]);
            let out = backup.barman(&["check", server])?;
            if out.success() && !out.stdout.contains("FAILED") {
                return Ok(Some(()));
            }
            pending(out.combined())
        },
    )
}
