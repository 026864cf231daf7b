//! Drill 6: interrupted provisioning. For each role, the node is first put back to "never
//! converged" for what that role creates (cheaply: the slave's cluster is dropped, the master's
//! and backup's pgnode files and the barman role removed), then converged again while pgnode is
//! killed with SIGKILL right after step line 1, then (on the next run) right after step line 2,
//! and so on: every step boundary of one fresh converge is a kill
//! point, each followed by a run that must go on without a failed step. The last run converges
//! (failed=0) and a rerun changes nothing; no duplicate object (roles, slots, Barman servers),
//! no half-written file (the writer's dot-temp files), exactly one clone.
//!
//! The kill comes from pgnode's documented test hook `PGNODE_TEST_KILL_AFTER_STEPS=N` (SIGKILL
//! to itself right after step line N): exact. A killer outside the process that reads the step
//! lines races with the next steps, most of which take milliseconds; tried first, its kills
//! landed one or more steps late.

use std::time::Duration;

use crate::faults::{self, Clock};
use crate::target::Command;
use crate::{ensure, fail, Ctx, Node, Result};

/// Most steps a role has today is about 20: the bound on kill points per role.
const MAX_KILLS: usize = 40;

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "pgnode killed (SIGKILL) at every step boundary of a fresh converge of each role: every next run goes on without a failed step, the last converges (failed=0), a rerun changes nothing; no duplicate roles, slots or Barman servers, no half-written file, one clone",
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
    for node in &nodes {
        let clock = Clock::start();
        reset(cx, node)?;
        let (kills, clones) = interrupted_converge(cx, node, &config)?;
        rerun_changes_nothing(node)?;
        no_duplicates(cx, node)?;
        let secs = clock.secs();
        ensure(
            node.role != pgnode_core::config::Role::Slave || clones == 1,
            format!("{node}: {clones} clones instead of one"),
            "",
        )?;
        cx.note(format!(
            "{node} ({}): killed at {kills} step boundaries, then converged; {secs:.1}s",
            node.role
        ));
        faults::table_line(
            cx,
            &format!("provisioning of {} killed at each of its {kills} step boundaries", node.role),
            "each rerun checks before it changes: finished steps are ok, the interrupted one is redone; files are written atomically",
            "no FAILED step in any rerun; last run failed=0, then changed=0; no duplicate roles/slots/servers, no temp files, one clone",
            Some(secs),
        );
    }
    faults::all_healthy(cx, faults::HEAL)
}

/// Puts back to "never converged" what the role creates, as cheaply as that role allows.
fn reset(cx: &Ctx, node: &Node) -> Result<()> {
    let barman_user = cx.cluster.config.barman.user.as_str();
    let server = cx.cluster.config.barman.server.as_str();
    match node.role {
        pgnode_core::config::Role::Slave => {
            let major = node.major()?.to_string();
            node.ok(&["pg_dropcluster", "--stop", &major, "main"])?;
            node.ok(&["rm", "-f", "/var/lib/postgresql/.pgpass"])?;
        }
        pgnode_core::config::Role::Master => {
            let major = node.major()?;
            node.ok(&[
                "rm",
                "-f",
                &format!("/etc/postgresql/{major}/main/conf.d/pgnode.conf"),
                "/var/lib/postgresql/.ssh/config",
                "/var/lib/postgresql/.ssh/known_hosts",
            ])?;
            node.sql(
                "postgres",
                &format!("drop owned by {barman_user}; drop role {barman_user}"),
            )?;
        }
        pgnode_core::config::Role::Backup => {
            node.ok(&[
                "rm",
                "-f",
                &format!("/etc/barman.d/{server}.conf"),
                "/var/lib/barman/.pgpass",
                "/var/lib/barman/.ssh/authorized_keys",
                "/etc/cron.d/pgnode-barman",
            ])?;
        }
    }
    Ok(())
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
        if text.contains("FAILED") {
            return fail(
                format!("{node}: a run after {} kill(s) has a failed step", n - 1),
                text,
            );
        }
        match out.code {
            _ if killed && !out.success() => {
                // The step that had just finished when the kill came, and what it did.
                let last = out
                    .stdout
                    .lines()
                    .filter(|l| l.ends_with("s]"))
                    .nth(n - 1)
                    .unwrap_or("?");
                let words: Vec<&str> = last.split_whitespace().collect();
                after.push(format!("{}:{}", n, words.first().copied().unwrap_or("?")));
                continue;
            }
            Some(0) if text.contains(" failed=0 ") => {
                cx.note(format!(
                    "{node}: killed after step line (and its outcome) {}",
                    after.join(" ")
                ));
                return Ok((n - 1, clones));
            }
            Some(0) if text.contains(" failed=0 ") => return Ok((n - 1, clones)),
            _ => return fail(format!("{node}: run {n} ended with {:?}", out.code), text),
        }
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

fn no_duplicates(cx: &Ctx, node: &Node) -> Result<()> {
    let temps = node.ok(&["sh", "-c", "find /etc/postgresql /etc/barman.d /etc/barman.conf /etc/cron.d /etc/ssh /var/lib/postgresql /var/lib/barman -maxdepth 4 -name '.*.pgnode-*' 2>/dev/null; true"])?;
    ensure(
        temps.trim().is_empty(),
        format!("{node}: half-written (temp) files left behind"),
        temps,
    )?;
    let c = &cx.cluster.config;
    match node.role {
        pgnode_core::config::Role::Master => {
            let slots = node.sql(
                "postgres",
                "select string_agg(slot_name, ' ' order by slot_name) from pg_replication_slots",
            )?;
            let want = {
                let mut v: Vec<&str> = c
                    .standbys()
                    .iter()
                    .filter_map(|n| n.slot.as_ref().map(|s| s.as_str()))
                    .collect();
                v.push(c.barman.slot.as_str());
                v.sort();
                v.join(" ")
            };
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
                format!("{node}: pgnode's roles are not there exactly once"),
                "",
            )?;
        }
        pgnode_core::config::Role::Slave => {
            let aside = node.run(&[
                "sh",
                "-c",
                "ls -d /var/lib/postgresql/*/main.pgnode-set-aside-* 2>/dev/null",
            ])?;
            ensure(
                aside.stdout.trim().is_empty(),
                format!("{node}: a data directory was set aside (a second clone)"),
                aside.stdout,
            )?;
        }
        pgnode_core::config::Role::Backup => {
            let servers = node.barman(&["list-servers", "--minimal"])?;
            ensure(
                servers.stdout.trim() == c.barman.server.as_str(),
                format!(
                    "{node}: Barman's servers are not exactly {}",
                    c.barman.server
                ),
                servers.combined(),
            )?;
        }
    }
    Ok(())
}
