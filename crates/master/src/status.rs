//! `pgnode status` on the primary: its timeline, each standby and Barman with state, sync state,
//! slot and lag (replay lag for standbys, write/flush lag for Barman), the slots' `wal_status`
//! and retained WAL in human units (raw bytes in the JSON), and the archiver.
//!
//! Each probe returns psql's row; the line of the table and the samples for `--prometheus`
//! ([`metrics`]) are both made from that one row.

use pgnode_core::status::{human, NodeStatus};
use pgnode_core::{pg, Ctx, Result};

mod metrics;

/// A row as psql printed it.
type Row = Vec<String>;

/// Column `i` of a row ("" when psql printed fewer).
fn col(r: &[String], i: usize) -> &str {
    r.get(i).map(String::as_str).unwrap_or("")
}

/// Gathers the primary's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let mut s = NodeStatus::new(n.name.as_str(), "master", &n.address.to_string());
    let row = server(ctx);
    metrics::server(&mut s, row.as_ref().ok(), ctx.major.get());
    s.add_result("postgresql", row.map(|r| server_line(&r)));
    if !s.healthy {
        return s;
    }
    let c = &ctx.cluster;
    for n in c.standbys() {
        let slot = n.slot.as_ref().map(|s| s.as_str()).unwrap_or("?");
        let user = c.replication.user.as_str();
        let row = client(ctx, user, slot);
        metrics::client(&mut s, n.name.as_str(), "standby", &row);
        s.add_raw(
            &format!("standby {}", n.name),
            row.map(|r| client_line(r.as_deref(), user, slot)),
        );
    }
    let (user, slot) = (c.barman.streaming_user.as_str(), c.barman.slot.as_str());
    let row = client(ctx, user, slot);
    metrics::client(&mut s, "barman", "barman", &row);
    s.add_raw(
        "barman receive-wal",
        row.map(|r| client_line(r.as_deref(), user, slot)),
    );
    let slots = c.standbys().iter().filter_map(|n| n.slot.as_ref());
    for slot in slots.chain([&c.barman.slot]).map(|s| s.as_str()) {
        let row = slot_state(ctx, slot);
        if let Ok(r) = &row {
            metrics::slot(&mut s, slot, r.as_deref());
        }
        s.add_raw(
            &format!("slot {slot}"),
            row.map(|r| slot_line(ctx, slot, r.as_deref())),
        );
    }
    let row = archiver(ctx);
    if let Ok(r) = &row {
        metrics::archiver(&mut s, r);
    }
    s.add_result("archiver", row.map(|r| archiver_line(&r)));
    s
}

/// Recovery, version, start time, timeline, synchronous_standby_names.
fn server(ctx: &Ctx) -> Result<Row> {
    let r = pg::query(&pg::local(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version'), pg_postmaster_start_time()::timestamp(0), (SELECT timeline_id FROM pg_control_checkpoint()), current_setting('synchronous_standby_names');"))?;
    Ok(r.into_iter().next().unwrap_or_default())
}

fn server_line(row: &[String]) -> (String, bool) {
    let primary = col(row, 0) == "f";
    let sync = if col(row, 4).is_empty() {
        String::new()
    } else {
        format!(", synchronous_standby_names = {}", col(row, 4))
    };
    (
        format!(
            "{} {}, timeline {}, up since {}{sync}",
            if primary {
                "primary"
            } else {
                "IN RECOVERY (not a primary)"
            },
            col(row, 1),
            col(row, 3),
            col(row, 2)
        ),
        primary,
    )
}

/// A walsender's client, by user and slot: address, application name, state, sync state, then
/// write, flush and replay lag in bytes and in seconds. `None` when it is not connected.
fn client(ctx: &Ctx, user: &str, slot: &str) -> Result<Option<Row>> {
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
    Ok(pg::query(&pg::local(ctx, &q))?.into_iter().next())
}

/// A standby replays, so its lag is replay lag; Barman's pg_receivewal never replays (its
/// replay_lag is stale from the last time it moved): write and flush lag.
fn client_line(
    row: Option<&[String]>,
    user: &str,
    slot: &str,
) -> (String, bool, serde_json::Value) {
    let Some(r) = row else {
        return (
            format!("not connected (user {user}, slot {slot})"),
            false,
            serde_json::Value::Null,
        );
    };
    let c = |i| col(r, i);
    let barman = c(1) == pgnode_core::config::Cluster::BARMAN_RECEIVER;
    let lag = if barman {
        format!(
            "written {} behind ({}s), flushed {} behind ({}s)",
            human(c(4)),
            c(7),
            human(c(5)),
            c(8)
        )
    } else {
        format!("replayed {} behind ({}s)", human(c(6)), c(9))
    };
    let num = |s: &str| s.parse::<i64>().ok();
    let raw = serde_json::json!({
        "sync_state": c(3), "write_lag_bytes": num(c(4)), "flush_lag_bytes": num(c(5)),
        "replay_lag_bytes": num(c(6)), "write_lag_s": c(7), "flush_lag_s": c(8), "replay_lag_s": c(9),
    });
    (
        format!(
            "{} from {} as {}, slot {slot}, {}, {lag}",
            c(2),
            c(0),
            c(1),
            c(3)
        ),
        c(2) == "streaming",
        raw,
    )
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

/// A slot: active, wal_status, retained bytes, safe_wal_size. `None` when it does not exist.
fn slot_state(ctx: &Ctx, slot: &str) -> Result<Option<Row>> {
    let q = format!(
        "SELECT active, coalesce(wal_status, 'unreserved?'), \
         coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, 'n/a'), \
         coalesce(safe_wal_size::text, 'unlimited') FROM pg_replication_slots WHERE slot_name = '{slot}';"
    );
    Ok(pg::query(&pg::local(ctx, &q))?.into_iter().next())
}

fn slot_line(ctx: &Ctx, slot: &str, row: Option<&[String]>) -> (String, bool, serde_json::Value) {
    match row {
        None => ("missing".to_string(), false, serde_json::Value::Null),
        // An invalidated slot never serves its consumer again: say so, and what repairs it.
        Some(r) if col(r, 1) == "lost" => (
            format!(
                "LOST: invalidated, its consumer fell behind max_slot_wal_keep_size (active={}); {}",
                col(r, 0),
                lost_repair(ctx, slot)
            ),
            false,
            serde_json::json!({"wal_status": "lost"}),
        ),
        // PostgreSQL shows an invalidated slot that a walsender still streams through as
        // unreserved, with the bound not reached: it protects no WAL any more.
        Some(r)
            if col(r, 1) == "unreserved"
                && col(r, 3).parse::<i64>().is_ok_and(|safe| safe > 0) =>
        {
            (
                format!(
                    "INVALIDATED but still streamed through (active={}, wal_status unreserved, retained={}): it protects no WAL; {}",
                    col(r, 0),
                    human(col(r, 2)),
                    if slot == ctx.cluster.barman.slot.as_str() {
                        "rerun `pgnode --role backup` on the backup node (re-creates the slot)"
                    } else {
                        "rerun `pgnode --role slave` on its standby (re-creates the slot without a re-clone)"
                    }
                ),
                false,
                serde_json::json!({"wal_status": "unreserved", "retained_bytes": col(r, 2).parse::<i64>().ok()}),
            )
        }
        Some(r) => {
            let c = |i| col(r, i);
            let ok = c(0) == "t" && (c(1) == "reserved" || c(1) == "extended");
            (
                format!(
                    "active={} wal_status={} retained={} safe_wal_size={}",
                    c(0),
                    c(1),
                    human(c(2)),
                    human(c(3))
                ),
                ok,
                serde_json::json!({"retained_bytes": c(2).parse::<i64>().ok(), "safe_wal_size_bytes": c(3).parse::<i64>().ok()}),
            )
        }
    }
}

/// pg_stat_archiver: archived count, last archived WAL, failed count, last failed WAL, whether
/// the last failure is newer than the last success, the last success's time (epoch, or "").
fn archiver(ctx: &Ctx) -> Result<Row> {
    let q = "SELECT archived_count, coalesce(last_archived_wal, '-'), failed_count, \
             coalesce(last_failed_wal, '-'), \
             coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false), \
             coalesce(extract(epoch FROM last_archived_time)::text, '') \
             FROM pg_stat_archiver;";
    Ok(pg::query(&pg::local(ctx, q))?
        .into_iter()
        .next()
        .unwrap_or_default())
}

fn archiver_line(r: &[String]) -> (String, bool) {
    let failing = col(r, 4) == "t";
    (
        format!(
            "archived {} (last {}), failed {}{}",
            col(r, 0),
            col(r, 1),
            col(r, 2),
            if failing {
                format!(", FAILING since {}", col(r, 3))
            } else {
                String::new()
            }
        ),
        !failing,
    )
}
