//! Drill 6: interrupted provisioning. For each role in turn (slave, master, backup) the node is
//! first put back to the state a fresh converge of that role starts from, then converged while
//! pgnode is killed with SIGKILL right after step line 1, then (on the next run) right after
//! step line 2, and so on: every step boundary of one fresh converge is a kill point, each
//! followed by a run that must go on without a failed step. The last run converges
//! (failed=0), a rerun changes nothing; no duplicate object (roles, slots, cron entries,
//! Barman servers), no half-written file (the writer's dot-temp files), exactly one clone of
//! the standby and one base backup in the fresh Barman.
//!
//! What "fresh" means per role (the files are the role's own list: every `file PATH` step line
//! of a converge):
//! - slave: the service stopped, its data directory moved aside by the check (not deleted),
//!   its cluster dropped (`pg_dropcluster`, which with the data directory gone removes only
//!   `/etc/postgresql/MAJOR/main`), every file of the role removed: the run creates the
//!   cluster, writes the files and clones.
//! - master: every file of the role removed and pgnode's three roles and its heartbeat table
//!   dropped (the sessions of those roles, the standby's and Barman's, ended), while the cluster's data stays (a new cluster would be a new system identifier:
//!   the standby and Barman would have to start over, which their own fresh converges cover)
//!   and so do the slots (the standby and Barman stream through them right now; dropping them
//!   would break those nodes, not test the master's converge).
//! - backup: receive-wal stopped, every file of the role removed (server config, cron entries,
//!   keys, sshd drop-in, forced command) and Barman's server directory moved aside: the run
//!   sets Barman up from nothing and takes its first base backup.
//!
//! A moved-aside copy is removed by the check once the fresh converge is proven (the standby
//! streams every acknowledged row, `barman check` is OK): it is the check's own copy, and the
//! lab's disk is shared.
//!
//! The kill comes from pgnode's documented test hook `PGNODE_TEST_KILL_AFTER_STEPS=N` (SIGKILL
//! to itself right after step line N): exact. A killer outside the process that reads the step
//! lines races with the next steps, most of which take milliseconds; tried first, its kills
//! landed one or more steps late.

use std::time::Duration;

use pgnode_core::config::Role;

use crate::faults::{self, Clock};
use crate::target::Command;
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Result};

/// Most steps a role has today is about 45 (the master's, monitoring included): the bound on
/// kill points per role.
const MAX_KILLS: usize = 80;
/// The suffix of what the check moves aside (not pgnode's `pgnode-set-aside`).
const ASIDE: &str = "e2e-interrupted-aside";
/// The ledger's table in this drill.
const TABLE: &str = "e2e_fault_interrupted";

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "pgnode killed (SIGKILL) at every step boundary of a fresh converge of each role (slave: no cluster, no data directory; master: no pgnode file, role or heartbeat table; backup: no Barman server, no archive): every next run goes on without a failed step, the last converges (failed=0), a rerun changes nothing; no duplicate roles, slots, cron entries or Barman servers, no half-written file, one clone, one first base backup",
    );
    let config = cx.cluster.target().layout().config;
    let nodes: Vec<Node> = [
        faults::first_standby(cx)?,
        cx.cluster.primary(),
        cx.cluster.backup(),
    ]
    .into_iter()
    .cloned()
    .collect();
    // Rows the fresh clone of the standby must hold.
    let load = faults::start_load(cx, TABLE, 10)?;
    faults::wait_rows(cx, TABLE, 200)?;
    load.finish(cx, false)?;
    for node in &nodes {
        one_role(cx, node, &config)?;
    }
    faults::all_healthy(cx, faults::HEAL)
}

/// Reset, interrupted converge, proofs and the table line for one node.
fn one_role(cx: &Ctx, node: &Node, config: &str) -> Result<()> {
    let files = role_files(node)?;
    let clock = Clock::start();
    let aside = reset(cx, node, &files)?;
    let (kills, clones) = interrupted_converge(cx, node, config)?;
    rerun_changes_nothing(node)?;
    no_duplicates(cx, node, &files, clones)?;
    let secs = clock.secs();
    proven_then_cleaned(cx, node, aside.as_deref())?;
    cx.note(format!(
        "{node} ({}): fresh converge killed at {kills} step boundaries, then converged; {secs:.1}s",
        node.role
    ));
    faults::table_line(
        cx,
        &format!("provisioning of {} killed at each of its {kills} step boundaries (fresh converge)", node.role),
        "each rerun checks before it changes: finished steps are ok, the interrupted one is redone; files are written atomically",
        "no FAILED step in any rerun; last run failed=0, then changed=0; no duplicate roles/slots/cron entries/servers, no temp files, one clone, one first backup",
        Some(secs),
    );
    Ok(())
}

/// The files the role writes: the `file PATH` step lines of a converge (which must change
/// nothing: the drill starts from a converged node).
fn role_files(node: &Node) -> Result<Vec<String>> {
    let out = faults::rerun_ok(node)?;
    let files: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("ok").or_else(|| l.strip_prefix("changed"))?;
            let path = rest.trim_start().strip_prefix("file ")?;
            let end = path.find([':', ' ']).unwrap_or(path.len());
            Some(path[..end].to_string())
        })
        .collect();
    ensure(
        files.len() >= 2 && files.iter().all(|f| f.starts_with('/')),
        format!("{node}: cannot read the role's files from a converge"),
        out,
    )?;
    Ok(files)
}

/// Puts the node back to where a fresh converge of its role starts (see the module docs).
/// Returns what was moved aside, if anything.
fn reset(cx: &Ctx, node: &Node, files: &[String]) -> Result<Option<String>> {
    let stamp = crate::token();
    let mut rm = vec!["rm", "-f"];
    rm.extend(files.iter().map(String::as_str));
    let aside = match node.role {
        Role::Slave => {
            let major = node.major()?.to_string();
            let data = format!("/var/lib/postgresql/{major}/main");
            let aside = format!("{data}.{ASIDE}-{stamp}");
            node.service_stop()?;
            node.ok(&["mv", &data, &aside])?;
            node.ok(&["pg_dropcluster", &major, "main"])?;
            node.ok(&rm)?;
            Some(aside)
        }
        Role::Master => {
            node.ok(&rm)?;
            let c = &cx.cluster.config;
            let mut sql = String::from("drop table if exists pgnode_heartbeat;");
            for user in [
                c.replication.user.as_str(),
                c.barman.streaming_user.as_str(),
                c.barman.user.as_str(),
            ] {
                sql.push_str(&format!("drop owned by {user}; drop role {user};"));
            }
            node.sql("postgres", &sql)?;
            // Sessions of the dropped roles (the standby's walsender, Barman's) would live on
            // under a role that no longer exists: end them, so that they reconnect once the
            // converge made the roles again, as they would to a freshly converged master. Only
            // once the drop has committed: ended in the same transaction, a walsender could
            // reconnect before the commit, still find the old role, and stream on under its
            // dangling id (seen once: the master's status then never found its standby).
            // After the commit a reconnect fails until the role exists again; a login that
            // had already passed authentication is ended by the next round.
            wait_for(
                "no session left under a dropped role",
                Duration::from_secs(30),
                || {
                    let n = node.sql(
                        "postgres",
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                         where usename is null and pid <> pg_backend_pid() \
                         and backend_type in ('walsender', 'client backend');",
                    )?;
                    if n.trim() == "0" {
                        Ok(Some(()))
                    } else {
                        pending(format!("ended {} session(s); looking again", n.trim()))
                    }
                },
            )?;
            None
        }
        Role::Backup => {
            let server = cx.cluster.config.barman.server.as_str();
            let dir = format!("/var/lib/barman/{server}");
            let aside = format!("{dir}.{ASIDE}-{stamp}");
            // Stopped, then its config gone at once: Barman's every-minute cron cannot
            // restart receive-wal for a server it no longer knows.
            node.barman(&["receive-wal", "--stop", server])?;
            node.ok(&rm)?;
            node.ok(&["mv", &dir, &aside])?;
            Some(aside)
        }
    };
    cx.note(format!(
        "{node}: reset to fresh: {} files of the role removed{}",
        files.len(),
        aside
            .as_ref()
            .map_or(String::new(), |a| format!(", moved aside to {a}"))
    ));
    Ok(aside)
}

/// Kills pgnode after step line 1, 2, ... until a run finishes by itself. Returns the number of
/// kills and of clones made.
fn interrupted_converge(cx: &Ctx, node: &Node, config: &str) -> Result<(usize, usize)> {
    let role = node.role.as_str();
    let mut clones = 0;
    let mut after = Vec::new();
    for n in 1..=MAX_KILLS {
        let hook = format!("PGNODE_TEST_KILL_AFTER_STEPS={n}");
        let cmd = Command::new(&["env", &hook, "pgnode", "--role", role, "--config", config])
            .timeout(Duration::from_secs(600));
        let out = node.exec(&cmd)?;
        let killed = out.stderr.contains("killed at this step boundary");
        let text = out.combined();
        clones += text
            .lines()
            .filter(|l| l.trim_start().starts_with("changed  data directory"))
            .count();
        // A step's tag, not a FAILED in a check's message (e.g. `barman check` before the
        // first WAL file arrived).
        if text.lines().any(|l| l.trim_start().starts_with("FAILED  ")) {
            return fail(
                format!("{node}: a run after {} kill(s) has a failed step", n - 1),
                text,
            );
        }
        if killed && !out.success() {
            // The step that had just finished when the kill came, and what it did.
            let last = out.stdout.lines().filter(|l| l.ends_with("s]")).nth(n - 1);
            let word = last
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?");
            after.push(format!("{n}:{word}"));
            continue;
        }
        if out.success() && text.contains(" failed=0 ") {
            cx.note(format!(
                "{node}: killed after step line (and its outcome) {}",
                after.join(" ")
            ));
            return Ok((n - 1, clones));
        }
        return fail(format!("{node}: run {n} ended with {:?}", out.code), text);
    }
    fail(
        format!("{node}: still killed after {MAX_KILLS} step lines"),
        "",
    )
}

fn rerun_changes_nothing(node: &Node) -> Result<()> {
    let out = faults::rerun_ok(node)?;
    ensure(
        out.contains(" changed=0 "),
        format!("{node}: the run after the interrupted converge still changed something"),
        out,
    )
}

/// No temp file of the writer beside any of the role's files, no cron line twice, and the
/// role's objects exactly once.
fn no_duplicates(cx: &Ctx, node: &Node, files: &[String], clones: usize) -> Result<()> {
    let mut dirs: Vec<&str> = files
        .iter()
        .filter_map(|f| f.rsplit_once('/').map(|(d, _)| d))
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut find = vec!["find"];
    find.extend(dirs);
    find.extend(["-maxdepth", "1", "-name", ".*.pgnode-*"]);
    let temps = node.run(&find)?.stdout;
    ensure(
        temps.trim().is_empty(),
        format!("{node}: half-written (temp) files left behind"),
        temps,
    )?;
    let cron = node.ok(&["sh", "-c", "cat /etc/cron.d/pgnode-* 2>/dev/null | grep -v '^#' | grep -v '^ *$' | grep -v '=' | sort | uniq -d"])?;
    ensure(
        cron.trim().is_empty(),
        format!("{node}: cron entries written twice"),
        cron,
    )?;
    match node.role {
        Role::Master => master_objects(cx, node),
        Role::Slave => {
            ensure(
                clones == 1,
                format!("{node}: {clones} clones instead of one"),
                "",
            )?;
            let aside = node.run(&[
                "sh",
                "-c",
                "ls -d /var/lib/postgresql/*/main.pgnode-set-aside-* 2>/dev/null",
            ])?;
            ensure(
                aside.stdout.trim().is_empty(),
                format!("{node}: pgnode set a data directory aside (a second clone)"),
                aside.stdout,
            )
        }
        Role::Backup => backup_objects(cx, node),
    }
}

/// Slots exactly the config's, pgnode's roles there.
fn master_objects(cx: &Ctx, node: &Node) -> Result<()> {
    let c = &cx.cluster.config;
    let slots = node.sql(
        "postgres",
        "select string_agg(slot_name, ' ' order by slot_name) from pg_replication_slots",
    )?;
    let mut want: Vec<&str> = c
        .standbys()
        .iter()
        .filter_map(|n| n.slot.as_ref().map(|s| s.as_str()))
        .collect();
    want.push(c.barman.slot.as_str());
    want.sort();
    let want = want.join(" ");
    ensure(
        slots == want,
        format!("{node}: slots are not exactly {want}"),
        slots,
    )?;
    let q = format!(
        "select count(*) from pg_roles where rolname in ('{}', '{}', '{}')",
        c.replication.user, c.barman.user, c.barman.streaming_user
    );
    ensure(
        node.sql("postgres", &q)? == "3",
        format!("{node}: pgnode's roles are not all there"),
        "",
    )?;
    let t = node.sql(
        "postgres",
        "select to_regclass('pgnode_heartbeat') is not null",
    )?;
    ensure(
        t == "t",
        format!("{node}: the heartbeat table is missing"),
        "",
    )
}

/// One Barman server, one base backup (the fresh converge's first, not one per rerun).
fn backup_objects(cx: &Ctx, node: &Node) -> Result<()> {
    let server = cx.cluster.config.barman.server.as_str();
    let servers = node.barman(&["list-servers", "--minimal"])?;
    ensure(
        servers.stdout.trim() == server,
        format!("{node}: Barman's servers are not exactly {server}"),
        servers.combined(),
    )?;
    let backups = node.barman(&["list-backups", "--minimal", server])?;
    let n = backups
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    ensure(
        n == 1,
        format!("{node}: {n} base backups in the fresh Barman instead of one"),
        backups.combined(),
    )?;
    cx.note(format!(
        "{node}: one Barman server, one base backup ({})",
        backups.stdout.trim()
    ));
    Ok(())
}

/// Proves the node serves again (standby: streams and holds the primary's rows; backup: barman
/// check OK), then removes what the check moved aside.
fn proven_then_cleaned(cx: &Ctx, node: &Node, aside: Option<&str>) -> Result<()> {
    match node.role {
        Role::Slave => {
            let s = faults::caught_up(cx, node, Duration::from_secs(120))?;
            let q = format!("select count(*) from {TABLE}");
            let (p, n) = (
                cx.cluster.primary().sql("postgres", &q)?,
                node.sql("postgres", &q)?,
            );
            ensure(
                p == n,
                format!("{node}: the fresh clone has {n} ledger rows, the primary {p}"),
                "",
            )?;
            cx.note(format!(
                "{node}: the fresh clone streams, caught up in {s:.1}s, {n} ledger rows as on the primary"
            ));
        }
        Role::Backup => {
            let server = cx.cluster.config.barman.server.as_str();
            wait_for("barman check OK", faults::HEAL, || {
                let out = node.barman(&["check", server])?;
                if out.success() {
                    Ok(Some(()))
                } else {
                    pending(out.combined())
                }
            })?;
        }
        Role::Master => {}
    }
    if let Some(a) = aside {
        node.ok(&["rm", "-rf", "--one-file-system", a])?;
        cx.note(format!("{node}: removed the check's own copy {a}"));
    }
    Ok(())
}
