//! `pgnode status` on the primary: each standby and Barman with state, slot, lag in bytes and
//! time, the slots' `wal_status`, and the archiver.

use pgnode_core::status::NodeStatus;
use pgnode_core::{pg, Ctx, Result};

/// Gathers the primary's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let mut s = NodeStatus::new(n.name.as_str(), "master", &n.address.to_string());
    s.add_result("postgresql", server(ctx));
    if !s.healthy {
        return s;
    }
    let c = &ctx.cluster;
    for n in c.standbys() {
        let slot = n.slot.as_ref().map(|s| s.as_str()).unwrap_or("?");
        s.add_result(
            &format!("standby {}", n.name),
            client(ctx, c.replication.user.as_str(), slot),
        );
    }
    s.add_result(
        "barman receive-wal",
        client(
            ctx,
            c.barman.streaming_user.as_str(),
            c.barman.slot.as_str(),
        ),
    );
    let slots = c.standbys().iter().filter_map(|n| n.slot.as_ref());
    for slot in slots.chain([&c.barman.slot]).map(|s| s.as_str()) {
        s.add_result(&format!("slot {slot}"), slot_state(ctx, slot));
    }
    s.add_result("archiver", archiver(ctx));
    s
}

fn server(ctx: &Ctx) -> Result<(String, bool)> {
    let r = pg::query(&pg::local(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version'), pg_postmaster_start_time()::timestamp(0);"))?;
    let row = &r[0];
    let primary = row[0] == "f";
    Ok((
        format!(
            "{} {}, up since {}",
            if primary {
                "primary"
            } else {
                "IN RECOVERY (not a primary)"
            },
            row[1],
            row[2]
        ),
        primary,
    ))
}

fn client(ctx: &Ctx, user: &str, slot: &str) -> Result<(String, bool)> {
    let q = format!(
        "SELECT r.client_addr, r.application_name, r.state, \
         pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.replay_lsn, r.write_lsn))::bigint, \
         coalesce(extract(epoch FROM coalesce(r.replay_lag, r.write_lag))::numeric(10,3)::text, '0') \
         FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid \
         WHERE r.usename = '{user}' AND s.slot_name = '{slot}';"
    );
    let rows = pg::query(&pg::local(ctx, &q))?;
    Ok(match rows.first() {
        None => (format!("not connected (user {user}, slot {slot})"), false),
        Some(r) => {
            let lag = if r[3].is_empty() {
                "n/a".to_string()
            } else {
                format!("{} bytes", r[3])
            };
            (
                format!(
                    "{} from {} as {}, slot {slot}, lag {lag} / {}s (replayed; written for Barman)",
                    r[2], r[0], r[1], r[4]
                ),
                r[2] == "streaming",
            )
        }
    })
}

fn slot_state(ctx: &Ctx, slot: &str) -> Result<(String, bool)> {
    let q = format!(
        "SELECT active, coalesce(wal_status, 'unreserved?'), \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, 'n/a'), \
         coalesce(safe_wal_size::text, 'unlimited') FROM pg_replication_slots WHERE slot_name = '{slot}';"
    );
    let rows = pg::query(&pg::local(ctx, &q))?;
    Ok(match rows.first() {
        None => ("missing".to_string(), false),
        Some(r) => {
            let ok = r[0] == "t" && (r[1] == "reserved" || r[1] == "extended");
            (
                format!(
                    "active={} wal_status={} retained={} bytes safe_wal_size={}",
                    r[0], r[1], r[2], r[3]
                ),
                ok,
            )
        }
    })
}

fn archiver(ctx: &Ctx) -> Result<(String, bool)> {
    let q = "SELECT archived_count, coalesce(last_archived_wal, '-'), failed_count, \
             coalesce(last_failed_wal, '-'), \
             coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) \
             FROM pg_stat_archiver;";
    let r = pg::query(&pg::local(ctx, q))?;
    let r = &r[0];
    let failing = r[4] == "t";
    Ok((
        format!(
            "archived {} (last {}), failed {}{}",
            r[0],
            r[1],
            r[2],
            if failing {
                format!(", FAILING since {}", r[3])
            } else {
                String::new()
            }
        ),
        !failing,
    ))
}
