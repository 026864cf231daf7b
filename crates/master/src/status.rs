//! `pgnode status` on the primary: its timeline, each standby and Barman with state, sync state,
//! slot and lag (replay lag for standbys, write/flush lag for Barman), the slots' `wal_status`
//! and retained WAL in human units (raw bytes in the JSON), and the archiver.

use pgnode_core::status::{human, NodeStatus};
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
        s.add_raw(
            &format!("standby {}", n.name),
            client(ctx, c.replication.user.as_str(), slot),
        );
    }
    s.add_raw(
        "barman receive-wal",
        client(
            ctx,
            c.barman.streaming_user.as_str(),
            c.barman.slot.as_str(),
        ),
    );
    let slots = c.standbys().iter().filter_map(|n| n.slot.as_ref());
    for slot in slots.chain([&c.barman.slot]).map(|s| s.as_str()) {
        s.add_raw(&format!("slot {slot}"), slot_state(ctx, slot));
    }
    s.add_result("archiver", archiver(ctx));
    s
}

fn server(ctx: &Ctx) -> Result<(String, bool)> {
    let r = pg::query(&pg::local(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version'), pg_postmaster_start_time()::timestamp(0), (SELECT timeline_id FROM pg_control_checkpoint()), current_setting('synchronous_standby_names');"))?;
    let row = &r[0];
    let primary = row[0] == "f";
    let sync = if row[4].is_empty() {
        String::new()
    } else {
        format!(", synchronous_standby_names = {}", row[4])
    };
    Ok((
        format!(
            "{} {}, timeline {}, up since {}{sync}",
            if primary {
                "primary"
            } else {
                "IN RECOVERY (not a primary)"
            },
            row[1],
            row[3],
            row[2]
        ),
        primary,
    ))
}

/// A walsender's client. A standby replays, so its lag is replay lag; Barman's pg_receivewal
/// never replays (its replay_lag is stale from the last time it moved): write and flush lag.
fn client(ctx: &Ctx, user: &str, slot: &str) -> Result<(String, bool, serde_json::Value)> {
    let q = format!(
        "SELECT r.client_addr, r.application_name, r.state, r.sync_state, \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.write_lsn)::bigint::text, ''), \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint::text, ''), \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint::text, ''), \
         coalesce(extract(epoch FROM r.write_lag)::numeric(10,3)::text, '0'), \
         coalesce(extract(epoch FROM r.flush_lag)::numeric(10,3)::text, '0'), \
         coalesce(extract(epoch FROM r.replay_lag)::numeric(10,3)::text, '0') \
         FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid \
         WHERE r.usename = '{user}' AND s.slot_name = '{slot}';"
    );
    let rows = pg::query(&pg::local(ctx, &q))?;
    let Some(r) = rows.first() else {
        return Ok((
            format!("not connected (user {user}, slot {slot})"),
            false,
            serde_json::Value::Null,
        ));
    };
    let barman = r[1] == pgnode_core::config::Cluster::BARMAN_RECEIVER;
    let lag = if barman {
        format!(
            "written {} behind ({}s), flushed {} behind ({}s)",
            human(&r[4]),
            r[7],
            human(&r[5]),
            r[8]
        )
    } else {
        format!("replayed {} behind ({}s)", human(&r[6]), r[9])
    };
    let num = |s: &str| s.parse::<i64>().ok();
    let raw = serde_json::json!({
        "sync_state": r[3], "write_lag_bytes": num(&r[4]), "flush_lag_bytes": num(&r[5]),
        "replay_lag_bytes": num(&r[6]), "write_lag_s": r[7], "flush_lag_s": r[8], "replay_lag_s": r[9],
    });
    Ok((
        format!(
            "{} from {} as {}, slot {slot}, {}, {lag}",
            r[2], r[0], r[1], r[3]
        ),
        r[2] == "streaming",
        raw,
    ))
}

/// What repairs the consumer of a lost slot.
fn lost_repair(ctx: &Ctx, slot: &str) -> String {
    if slot == ctx.cluster.barman.slot.as_str() {
        "rerun `pgnode --role backup` on the backup node (re-creates the slot, resets \
         receive-wal; archive_command fills the gap)"
            .to_string()
    } else {
        "rerun `pgnode --role slave` on its standby (re-clones it, keeping the old data \
         directory aside)"
            .to_string()
    }
}

fn slot_state(ctx: &Ctx, slot: &str) -> Result<(String, bool, serde_json::Value)> {
    let q = format!(
        "SELECT active, coalesce(wal_status, 'unreserved?'), \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, 'n/a'), \
         coalesce(safe_wal_size::text, 'unlimited') FROM pg_replication_slots WHERE slot_name = '{slot}';"
    );
    let rows = pg::query(&pg::local(ctx, &q))?;
    Ok(match rows.first() {
        None => ("missing".to_string(), false, serde_json::Value::Null),
        // An invalidated slot never serves its consumer again: say so, and what repairs it.
        Some(r) if r[1] == "lost" => (
            format!(
                "LOST: invalidated, its consumer fell behind max_slot_wal_keep_size (active={}); {}",
                r[0],
                lost_repair(ctx, slot)
            ),
            false,
            serde_json::json!({"wal_status": "lost"}),
        ),
        Some(r) => {
            let ok = r[0] == "t" && (r[1] == "reserved" || r[1] == "extended");
            (
                format!(
                    "active={} wal_status={} retained={} safe_wal_size={}",
                    r[0],
                    r[1],
                    human(&r[2]),
                    human(&r[3])
                ),
                ok,
                serde_json::json!({"retained_bytes": r[2].parse::<i64>().ok(), "safe_wal_size_bytes": r[3].parse::<i64>().ok()}),
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
