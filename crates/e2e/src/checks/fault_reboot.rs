//! Drill 7: each guest is rebooted (clean power-off, boot) under load: everything comes back
//! without a provisioning run (services enabled, receive-wal restarted by Barman's cron, the
//! standby streams).

use crate::faults::{self, Clock};
use crate::{Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "after a reboot of each node in turn, every node is healthy again without a provisioning run, and no acknowledged commit is lost",
    );
    let hooks = faults::hooks(cx)?;
    let nodes: Vec<crate::Node> = cx.cluster.nodes().into_iter().cloned().collect();
    for node in &nodes {
        let primary_down = node.role == pgnode_core::config::Role::Master;
        let mut load = faults::start_load(cx, "e2e_fault_reboot", 10)?;
        if primary_down {
            // The ledger's client runs in the primary's machine: it ends with the power-off.
            // Some commits first, so that the promise is about something.
            faults::wait_rows(cx, "e2e_fault_reboot", 300)?;
            load.settle_ledger(cx)?;
        }
        faults::hook(&format!("power off {node}"), hooks.power_off(&node.name))?;
        let undo = faults::Undo::power(hooks, &node.name);
        let clock = Clock::start();
        faults::hook(&format!("boot {node}"), hooks.boot(&node.name))?;
        undo.done();
        faults::all_healthy(cx, faults::HEAL)?;
        let secs = clock.secs();
        cx.note(format!(
            "{node} rebooted: every node healthy {secs:.1}s after power-on, no provisioning run"
        ));
        load.finish(cx, primary_down)?;
        faults::table_line(
            cx,
            &format!("reboot of {} ({node})", node.role),
            "nothing: services enabled at converge; Barman's cron restarts receive-wal",
            "every node's status healthy without a provisioning run; every acknowledged commit present",
            Some(secs),
        );
    }
    Ok(())
}
