//! The primary streams to the standby and to Barman, through active slots.

use std::time::Duration;

use crate::text::flat;
use crate::{pending, wait_for, Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let c = &cx.cluster.config;
    let primary = cx.cluster.primary();
    let (repl_user, stream_user) = (
        c.replication.user.as_str(),
        c.barman.streaming_user.as_str(),
    );
    let q = "select usename, application_name, state from pg_stat_replication order by 1";
    let barman_line = format!("{stream_user}|barman_receive_wal|streaming");
    let standby_streams = |l: &str| {
        let f: Vec<&str> = l.split('|').collect();
        matches!(f.as_slice(), [u, _, "streaming"] if *u == repl_user)
    };
    let what =
        format!("pg_stat_replication on {primary}: {repl_user} and barman_receive_wal streaming");
    let rows = wait_for(&what, Duration::from_secs(90), || {
        let out = primary.sql("postgres", q)?;
        if out.lines().any(|l| l == barman_line) && out.lines().any(standby_streams) {
            return Ok(Some(out));
        }
        pending(out)
    })?;
    cx.note(flat(&rows));
    let q = "select slot_name, active from pg_replication_slots order by 1";
    // Every standby through its own slot, and Barman through its slot.
    let mut slots: Vec<&str> = c
        .standbys()
        .iter()
        .filter_map(|n| n.slot.as_ref().map(|s| s.as_str()))
        .collect();
    slots.push(c.barman.slot.as_str());
    let what = format!("slots {} all active on {primary}", slots.join(", "));
    let want: Vec<String> = slots.iter().map(|s| format!("{s}|t")).collect();
    let slots = wait_for(&what, Duration::from_secs(90), || {
        let out = primary.sql("postgres", q)?;
        if want.iter().all(|w| out.lines().any(|l| l == w)) {
            return Ok(Some(out));
        }
        pending(out)
    })?;
    cx.note(format!("slots: {}", flat(&slots)));
    Ok(())
}
