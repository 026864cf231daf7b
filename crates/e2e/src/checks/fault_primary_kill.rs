//! Drill 4a: the primary's postmaster is killed (`kill -9`) under load, then started again: the
//! standby and Barman reconnect by themselves and no acknowledged commit is lost.

use crate::faults::{self, Clock};
use crate::{Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "after kill -9 of the primary's postmaster and a restart, crash recovery keeps every acknowledged commit and the standby and Barman reconnect by themselves; every node healthy",
    );
    let primary = cx.cluster.primary();
    let load = faults::start_load(cx, "e2e_fault_primary_kill", 15)?;
    faults::write_wal(primary, 1)?;
    primary.kill9_postmaster()?;
    cx.note(format!(
        "{primary}: postmaster killed with SIGKILL under load"
    ));
    let clock = Clock::start();
    // Debian's postgresql@ unit does not restart a killed server: the operator (here the
    // drill) starts it; pgnode's part is that nothing else needs doing.
    primary.service_stop().ok();
    primary.service_start()?;
    faults::all_healthy(cx, faults::HEAL)?;
    let secs = clock.secs();
    load.finish(cx, true)?;
    faults::table_line(
        cx,
        "primary killed (kill -9 of the postmaster)",
        "nothing beyond starting the service: crash recovery; the standby and Barman's receive-wal reconnect by themselves",
        "every acknowledged commit on primary and standby; every node's status healthy",
        Some(secs),
    );
    Ok(())
}
