//! `pgnode status`: healthy everywhere (exit 0, the JSON says so); with the standby stopped the
//! primary's status fails and names it; the standby's role brings it back and the status recovers.

use std::time::Duration;

use crate::text::{and_list, last_line, squeeze};
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Result};

/// Starts the stopped standby again if the check ends early (a no-op once the role restarted it).
struct Restart<'a>(&'a Node);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        let _ = self.0.service_start();
    }
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let nodes = cx.cluster.nodes();
    for n in &nodes {
        let out = n.pgnode(&["status", "--json"])?;
        ensure(
            out.success(),
            format!("pgnode status on {n} is not healthy"),
            out.combined(),
        )?;
        ensure(
            out.stdout.contains("\"healthy\": true"),
            format!("pgnode status --json on {n} does not say healthy"),
            out.combined(),
        )?;
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    cx.note(format!(
        "pgnode status: healthy on {} (exit 0)",
        and_list(&names)
    ));
    let primary = cx.cluster.primary();
    let Some(standby) = cx.cluster.standbys().into_iter().next() else {
        return fail("the config has no standby to stop", "");
    };
    standby.service_stop()?;
    // Whatever happens next, the standby does not stay down for the checks that follow.
    let _restart = Restart(standby);
    let out = wait_for(
        "the primary's status to notice the stopped standby",
        Duration::from_secs(60),
        || {
            let out = primary.pgnode(&["status"])?;
            if out.success() {
                return pending(out.combined());
            }
            Ok(Some(out.combined()))
        },
    )?;
    let want = format!("FAIL standby {standby} not connected");
    let Some(line) = out.lines().find(|l| squeeze(l).contains(&want)) else {
        return fail(
            format!("the primary's status does not name the missing standby {standby}"),
            out,
        );
    };
    cx.note(format!(
        "standby stopped: {primary} status exits 1 with: {}",
        squeeze(line)
    ));
    let out = standby.provision()?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("the {} role did not bring the standby back", standby.role),
        &text,
    )?;
    ensure(
        text.contains("changed  service postgresql@"),
        format!("the {} role did not start PostgreSQL", standby.role),
        &text,
    )?;
    wait_for(
        "the primary's status to be healthy again",
        Duration::from_secs(60),
        || {
            let out = primary.pgnode(&["status"])?;
            if out.success() {
                return Ok(Some(()));
            }
            pending(out.combined())
        },
    )?;
    cx.note(format!(
        "{} role restarted it: {}; {primary} status healthy again",
        standby.role,
        last_line(&out.stdout)
    ));
    Ok(())
}
