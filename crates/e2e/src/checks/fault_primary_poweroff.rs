//! Drill 4b: the primary's machine loses power under load (hard power-off) and boots again: its
//! PostgreSQL starts by itself, the standby and Barman reconnect, no acknowledged commit is lost.

use crate::faults::{self, Clock};
use crate::{Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "after a hard power-off of the primary under load and a boot, PostgreSQL starts by itself, every acknowledged commit is there, the standby and Barman reconnect by themselves; every node healthy",
    );
    let hooks = faults::hooks(cx)?;
    let primary = cx.cluster.primary();
    let mut load = faults::start_load(cx, "e2e_fault_primary_poweroff", 15)?;
    faults::write_wal(primary, 1)?;
    // Some commits first, so that the promise is about something.
    faults::wait_rows(cx, "e2e_fault_primary_poweroff", 300)?;
    load.settle_ledger(cx)?;
    faults::hook("hard power-off of the primary", hooks.kill(&primary.name))?;
    let undo = faults::Undo::power(hooks, &primary.name);
    cx.note(format!("{primary}: hard power-off under load"));
    let clock = Clock::start();
    faults::hook("boot the primary", hooks.boot(&primary.name))?;
    undo.done();
    faults::all_healthy(cx, faults::HEAL)?;
    let secs = clock.secs();
    load.finish(cx, true)?;
    faults::table_line(
        cx,
        "primary hard power-off",
        "nothing: the service is enabled, crash recovery on boot; the standby and Barman reconnect by themselves",
        "every acknowledged commit on primary and standby; every node's status healthy, no provisioning run",
        Some(secs),
    );
    Ok(())
}
