//! `pgnode status` on the standby: recovery, the WAL receiver and the replay lag. Each probe
//! returns psql's row; the table's line and the samples for `--prometheus` are both made from it.

use pgnode_core::status::NodeStatus;
use pgnode_core::{metrics, pg, Ctx, Result};

/// A row as psql printed it.
type Row = Vec<String>;

/// Column `i` of a row ("" when psql printed fewer).
fn col(r: &[String], i: usize) -> &str {
    r.get(i).map(String::as_str).unwrap_or("")
}

/// Gathers the standby's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let mut s = NodeStatus::new(n.name.as_str(), "slave", &n.address.to_string());
    let row = server(ctx);
    let up = matches!(&row, Ok(r) if !r.is_empty());
    server_metrics(&mut s, row.as_ref().ok(), ctx.major.get());
    s.add_result("postgresql", row.map(|r| server_line(&r)));
    if s.healthy {
        let row = receiver(ctx);
        if let Ok(r) = &row {
            receiver_metrics(&mut s, r.as_deref());
        }
        s.add_result(
            "wal receiver",
            row.and_then(|r| receiver_line(ctx, r.as_deref())),
        );
        let row = lag(ctx);
        if let Ok(r) = &row {
            lag_metrics(&mut s, r);
        }
        s.add_result("replay lag", row.map(|r| lag_line(&r)));
    } else if up {
        // PostgreSQL answered but is no standby: no WAL receiver can be streaming.
        receiver_metrics(&mut s, None);
    }
    s
}

/// Recovery, version, read-only, start time, timeline of the last restartpoint.
fn server(ctx: &Ctx) -> Result<Row> {
    let r = pg::query(&pg::local(ctx, "SELECT pg_is_in_recovery(), current_setting('server_version'), current_setting('transaction_read_only'), pg_postmaster_start_time()::timestamp(0), (SELECT timeline_id FROM pg_control_checkpoint());"))?;
    Ok(r.into_iter().next().unwrap_or_default())
}

fn server_line(r: &[String]) -> (String, bool) {
    let ok = col(r, 0) == "t" && col(r, 2) == "on";
    (
        format!(
            "{} {}, read-only={}, up since {}",
            if col(r, 0) == "t" {
                "hot standby"
            } else {
                "NOT IN RECOVERY"
            },
            col(r, 1),
            col(r, 2),
            col(r, 3)
        ),
        ok,
    )
}

fn server_metrics(s: &mut NodeStatus, row: Option<&Row>, major: u16) {
    let answered = row
        .filter(|r| !r.is_empty())
        .map(|r| (col(r, 0) == "t", col(r, 4).parse().ok()));
    metrics::postgresql(s, answered, major);
}

/// pg_stat_wal_receiver: status, sender, slot, last message, timeline; `None` when no receiver runs.
fn receiver(ctx: &Ctx) -> Result<Option<Row>> {
    let q = "SELECT status, coalesce(sender_host, '?'), coalesce(slot_name, '-'), coalesce(latest_end_time::timestamp(0)::text, '-'), received_tli FROM pg_stat_wal_receiver;";
    Ok(pg::query(&pg::local(ctx, q))?.into_iter().next())
}

fn receiver_line(ctx: &Ctx, row: Option<&[String]>) -> Result<(String, bool)> {
    let want_slot = ctx.node().standby_slot()?.as_str();
    Ok(match row {
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
                col(r, 0),
                col(r, 1),
                col(r, 2),
                col(r, 4),
                col(r, 3)
            ),
            // Streaming from the config's master, through this node's own slot.
            col(r, 0) == "streaming"
                && col(r, 1) == ctx.cluster.master.address.to_string()
                && col(r, 2) == want_slot,
        ),
    })
}

fn receiver_metrics(s: &mut NodeStatus, row: Option<&[String]>) {
    let streaming = row.is_some_and(|r| col(r, 0) == "streaming");
    s.flag("pgnode_standby_streaming", &[], streaming);
}

/// Received but not replayed (bytes, or "?"), seconds since the last replayed transaction.
fn lag(ctx: &Ctx) -> Result<Row> {
    let q = "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint::text, '?'), \
             coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::bigint::text, 'n/a');";
    Ok(pg::query(&pg::local(ctx, q))?
        .into_iter()
        .next()
        .unwrap_or_default())
}

fn lag_line(r: &[String]) -> (String, bool) {
    (
        format!(
            "{} received but not replayed; last replayed transaction {}s ago",
            pgnode_core::status::human(col(r, 0)),
            col(r, 1)
        ),
        true,
    )
}

fn lag_metrics(s: &mut NodeStatus, r: &[String]) {
    if let Ok(b) = col(r, 0).parse::<f64>() {
        s.metric("pgnode_standby_replay_lag_bytes", &[], b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[&str]) -> Row {
        cols.iter().map(|c| c.to_string()).collect()
    }

    fn text(s: &NodeStatus) -> String {
        for x in &s.samples {
            assert!(
                metrics::family(x.name).is_some(),
                "{} not registered",
                x.name
            );
        }
        metrics::render(&s.samples)
    }

    #[test]
    fn a_streaming_standby_with_lag() {
        let mut s = NodeStatus::new("slave", "slave", "192.168.11.102");
        let r = row(&["t", "15.8", "on", "2026-11-26 10:00:00", "2"]);
        server_metrics(&mut s, Some(&r), 15);
        let rx = row(&["streaming", "192.168.11.101", "pg_slot_1", "-", "2"]);
        receiver_metrics(&mut s, Some(&rx));
        lag_metrics(&mut s, &row(&["8192", "3"]));
        let t = text(&s);
        for want in [
            "pgnode_postgresql_up 1\n",
            "pgnode_postgresql_in_recovery 1\n",
            "pgnode_postgresql_timeline 2\n",
            "pgnode_postgresql_major 15\n",
            "pgnode_standby_streaming 1\n",
            "pgnode_standby_replay_lag_bytes 8192\n",
        ] {
            assert!(t.contains(want), "{want:?} not in:\n{t}");
        }
    }

    #[test]
    fn no_receiver_or_an_unknown_lag() {
        let mut s = NodeStatus::new("slave", "slave", "192.168.11.102");
        receiver_metrics(&mut s, None);
        lag_metrics(&mut s, &row(&["?", "n/a"]));
        let t = text(&s);
        assert!(t.contains("pgnode_standby_streaming 0\n"), "{t}");
        assert!(!t.contains("replay_lag_bytes"), "{t}");
        let mut s = NodeStatus::new("slave", "slave", "192.168.11.102");
        let rx = row(&["waiting", "192.168.11.101", "pg_slot_1", "-", "2"]);
        receiver_metrics(&mut s, Some(&rx));
        assert!(text(&s).contains("pgnode_standby_streaming 0\n"));
    }
}
