//! Drill 5: a network partition between primary and standby (the standby's link down for a
//! bounded time) under load, then healed: the standby resumes streaming and catches up.

use std::time::Duration;

use crate::faults::{self, Clock};
use crate::{ensure, Ctx, Result};

/// Long enough that the primary writes on without the standby; short of wal_sender_timeout.
const PARTITION: Duration = Duration::from_secs(15);

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "a standby cut off from the primary for 15 s under load resumes streaming once the link is back and replays every acknowledged commit; every node healthy",
    );
    let hooks = faults::hooks(cx)?;
    let (primary, standby) = (cx.cluster.primary(), faults::first_standby(cx)?);
    let load = faults::start_load(cx, "e2e_fault_partition", 25)?;
    faults::hook("cut the standby's link", hooks.link(&standby.name, false))?;
    let cut = Clock::start();
    let before = standby.sql("postgres", "select pg_last_wal_receive_lsn()")?;
    let ping = standby.run(&["ping", "-c", "1", "-W", "1", &primary.address.to_string()])?;
    ensure(
        !ping.success(),
        "the standby still reaches the primary with its link down",
        ping.combined(),
    )?;
    // The partition lasts a fixed, bounded time on purpose: it is the fault being injected, not
    // a wait for a condition.
    std::thread::sleep(PARTITION.saturating_sub(Duration::from_secs_f64(cut.secs())));
    let during = standby.sql("postgres", "select pg_last_wal_receive_lsn()")?;
    let ahead = primary.sql(
        "postgres",
        &format!("select pg_current_wal_lsn() > '{during}'::pg_lsn"),
    )?;
    ensure(
        ahead == "t",
        "the primary did not write on during the partition",
        format!("standby received {during}"),
    )?;
    cx.note(format!(
        "partition {:.0}s: standby stuck at {during} (was {before}), primary ahead",
        cut.secs()
    ));
    let clock = Clock::start();
    faults::hook(
        "restore the standby's link",
        hooks.link(&standby.name, true),
    )?;
    faults::caught_up(cx, standby, Duration::from_secs(120))?;
    let secs = clock.secs();
    cx.note(format!(
        "{standby} streaming and caught up {secs:.1}s after the link came back"
    ));
    load.finish(cx, false)?;
    faults::all_healthy(cx, faults::HEAL)?;
    faults::table_line(
        cx,
        "network partition primary/standby (15 s)",
        "nothing: the WAL receiver resumes (the slot kept the WAL)",
        "no route during the cut, primary wrote on; standby streams and replays every acknowledged commit after",
        Some(secs),
    );
    Ok(())
}
