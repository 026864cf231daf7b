//! `pgnode status` on the standby: recovery, the WAL receiver and the replay lag.

use pgnode_core::status::NodeStatus;
use pgnode_core::{pg, Ctx, Result};

/// Gathers the standby's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let mut s = NodeStatus::new(n.name.as_str(), "slave", &n.address.to_string());
    s.add_result("postgresql", server(ctx));
    if s.healthy {
        s.add_result("wal receiver", receiver(ctx));
        s.add_result("replay lag", lag(ctx));
    }
    s
}

fn server(ctx: &Ctx) -> Result<(String, bool)> {
    let r = pg::query(&pg::local(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version'), current_setting('transaction_read_only'), pg_postmaster_start_time()::timestamp(0);"))?;
    let r = &r[0];
    let ok = r[0] == "t" && r[2] == "on";
    Ok((
        format!(
            "{} {}, read-only={}, up since {}",
            if r[0] == "t" {
                "hot standby"
            } else {
                "NOT IN RECOVERY"
            },
            r[1],
            r[2],
            r[3]
        ),
        ok,
    ))
}

fn receiver(ctx: &Ctx) -> Result<(String, bool)> {
    let q = "SELECT status, coalesce(sender_host, '?'), coalesce(slot_name, '-'), coalesce(latest_end_time::timestamp(0)::text, '-'), received_tli FROM pg_stat_wal_receiver;";
    let rows = pg::query(&pg::local(ctx, q))?;
    let want_slot = ctx.node().standby_slot()?.as_str();
    Ok(match rows.first() {
        // A receiver that failed for good (slot invalidated, WAL gone) is not merely reconnecting.
        None => match crate::repair::receiver_verdict(ctx) {
            Some(line) => (
                format!("CANNOT STREAM: {line}; rerun the slave role: it re-clones"),
                false,
            ),
            None => ("no WAL receiver running".into(), false),
        },
        Some(r) => (
            format!(
                "{} from {} via slot {}, timeline {}, last message {}",
                r[0], r[1], r[2], r[4], r[3]
            ),
            // Streaming from the config's master, through this node's own slot.
            r[0] == "streaming"
                && r[1] == ctx.cluster.master.address.to_string()
                && r[2] == want_slot,
        ),
    })
}

fn lag(ctx: &Ctx) -> Result<(String, bool)> {
    let q = "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint::text, '?'), \
             coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::bigint::text, 'n/a');";
    let r = pg::query(&pg::local(ctx, q))?;
    let r = &r[0];
    Ok((
        format!(
            "{} received but not replayed; last replayed transaction {}s ago",
            pgnode_core::status::human(&r[0]),
            r[1]
        ),
        true,
    ))
}
