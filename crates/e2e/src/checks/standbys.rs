//! More than one standby (a config such as config/e2e-two-standbys.json). Promise: every
//! standby streams through its own slot; after a switchover to the second standby, the old
//! primary and the first standby both stream from it, and Barman follows. The original
//! topology is restored afterwards.

use super::day2;
use crate::{fail, Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let standbys: Vec<_> = cx.cluster.standbys().into_iter().cloned().collect();
    if standbys.len() < 2 {
        return fail(
            "this check needs a config with at least two standbys",
            "boot the lab with PGNODE_LAB_CONFIG=config/e2e-two-standbys.json",
        );
    }
    let primary = cx.cluster.primary().clone();
    for s in &standbys {
        let Some(slot) = cx
            .cluster
            .config
            .named(&s.name)
            .and_then(|n| n.slot.as_ref())
            .map(|s| s.to_string())
        else {
            return fail(format!("standby {s} has no slot in the config"), "");
        };
        let q = format!(
            "select count(*) from pg_stat_replication r join pg_replication_slots s on s.active_pid = r.pid \
             where r.client_addr = '{}' and s.slot_name = '{slot}' and r.state = 'streaming'",
            s.address
        );
        primary.poll_until("postgres", &q, "1", std::time::Duration::from_secs(60))?;
        cx.note(format!(
            "{s} streams from {primary} through its own slot {slot}"
        ));
    }
    day2::with_restore(cx, |cx| {
        let orig = day2::original(cx)?;
        let target = standbys[1].clone();
        let there = day2::with_master(&orig, &target.name);
        let path = day2::write_config(cx, day2::SWITCHED, &there)?;
        let before = day2::newest_done(cx)?;
        day2::converge(cx, &there, &path, &primary.name, &[])?;
        day2::is_primary(&target)?;
        for follower in [&primary, &standbys[0]] {
            day2::streams_from(follower, &target)?;
            cx.note(format!(
                "after the switchover to {target}: {follower} streams from it"
            ));
        }
        let backup = day2::barman_follows(cx, &before)?;
        cx.note(format!(
            "barman check OK against {target}; new backup {backup} DONE"
        ));
        Ok(())
    })
}
