//! The primary's facts as Prometheus samples (`pgnode status --prometheus`), made from the rows
//! the status probes already read. Pure: the tests feed rows as psql prints them.

use pgnode_core::metrics;
use pgnode_core::status::NodeStatus;
use pgnode_core::Result;

use super::{col, Row};

/// The server: up when the query answered (a row), in recovery, timeline; and the major.
pub(super) fn server(s: &mut NodeStatus, row: Option<&Row>, major: u16) {
    let answered = row
        .filter(|r| !r.is_empty())
        .map(|r| (col(r, 0) == "t", col(r, 3).parse().ok()));
    metrics::postgresql(s, answered, major);
}

/// A walsender client (`kind` standby or barman): streaming, flush lag, and for a standby its
/// replay lag in bytes and seconds. Nothing when the query failed (the item says why).
pub(super) fn client(s: &mut NodeStatus, client: &str, kind: &str, row: &Result<Option<Row>>) {
    let Ok(row) = row else {
        return;
    };
    let streaming = row.as_ref().is_some_and(|r| col(r, 2) == "streaming");
    s.flag(
        "pgnode_replication_streaming",
        &[("client", client), ("kind", kind)],
        streaming,
    );
    let Some(r) = row else {
        return;
    };
    let labels = [("client", client)];
    if let Ok(b) = col(r, 5).parse::<f64>() {
        s.metric("pgnode_replication_flush_lag_bytes", &labels, b);
    }
    if kind == "standby" {
        if let Ok(b) = col(r, 6).parse::<f64>() {
            s.metric("pgnode_replication_replay_lag_bytes", &labels, b);
        }
        // replay_lag is null once the standby has caught up and nothing is written: no lag.
        let secs = col(r, 9).parse::<f64>().unwrap_or(0.0);
        s.metric("pgnode_replication_replay_lag_seconds", &labels, secs);
    }
}

/// The wal_status values PostgreSQL reports (13 and later).
const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

/// A slot of the config: present, active, lost, its wal_status, retained WAL and safe_wal_size
/// (when not null). A missing slot is present 0, active 0, lost 0.
pub(super) fn slot(s: &mut NodeStatus, slot: &str, row: Option<&[String]>) {
    let labels = [("slot", slot)];
    s.flag("pgnode_slot_present", &labels, row.is_some());
    let Some(r) = row else {
        s.flag("pgnode_slot_active", &labels, false);
        s.flag("pgnode_slot_lost", &labels, false);
        return;
    };
    let status = col(r, 1);
    s.flag("pgnode_slot_active", &labels, col(r, 0) == "t");
    s.flag("pgnode_slot_lost", &labels, status == "lost");
    if WAL_STATUSES.contains(&status) {
        let l = [("slot", slot), ("status", status)];
        s.metric("pgnode_slot_wal_status", &l, 1.0);
    }
    if let Ok(b) = col(r, 2).parse::<f64>() {
        s.metric("pgnode_slot_retained_bytes", &labels, b);
    }
    if let Ok(b) = col(r, 3).parse::<f64>() {
        s.metric("pgnode_slot_safe_wal_size_bytes", &labels, b);
    }
}

/// The archiver: counters, failing (the last failure is newer than the last success), and when
/// the last WAL file was archived (if ever).
pub(super) fn archiver(s: &mut NodeStatus, r: &[String]) {
    if let Ok(n) = col(r, 0).parse::<f64>() {
        s.metric("pgnode_archiver_archived_total", &[], n);
    }
    if let Ok(n) = col(r, 2).parse::<f64>() {
        s.metric("pgnode_archiver_failed_total", &[], n);
    }
    s.flag("pgnode_archiver_failing", &[], col(r, 4) == "t");
    if let Ok(t) = col(r, 5).parse::<f64>() {
        s.metric("pgnode_archiver_last_archived_timestamp_seconds", &[], t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgnode_core::metrics::render;

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
        render(&s.samples)
    }

    fn has(t: &str, lines: &[&str]) {
        for l in lines {
            assert!(t.contains(&format!("{l}\n")), "{l:?} not in:\n{t}");
        }
    }

    #[test]
    fn a_primary_that_answers_and_one_that_does_not() {
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        let r = row(&["f", "15.8", "2026-11-26 10:00:00", "3", ""]);
        server(&mut s, Some(&r), 15);
        let t = text(&s);
        has(
            &t,
            &["pgnode_postgresql_up 1", "pgnode_postgresql_in_recovery 0"],
        );
        has(
            &t,
            &["pgnode_postgresql_timeline 3", "pgnode_postgresql_major 15"],
        );
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        server(&mut s, None, 17);
        let t = text(&s);
        has(
            &t,
            &["pgnode_postgresql_up 0", "pgnode_postgresql_major 17"],
        );
        assert!(!t.contains("in_recovery") && !t.contains("timeline"), "{t}");
    }

    #[test]
    fn a_streaming_standby_barman_and_an_absent_client() {
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        let standby = row(&[
            "192.168.11.102",
            "slave",
            "streaming",
            "async",
            "0",
            "16384",
            "24576",
            "0.001",
            "0.002",
            "",
        ]);
        client(&mut s, "slave", "standby", &Ok(Some(standby)));
        let barman = row(&[
            "192.168.11.103",
            "barman_receive_wal",
            "catchup",
            "async",
            "0",
            "1048576",
            "99",
            "0",
            "0",
            "7.5",
        ]);
        client(&mut s, "barman", "barman", &Ok(Some(barman)));
        client(&mut s, "slave2", "standby", &Ok(None));
        let t = text(&s);
        has(
            &t,
            &[
                "pgnode_replication_streaming{client=\"slave\",kind=\"standby\"} 1",
                "pgnode_replication_streaming{client=\"barman\",kind=\"barman\"} 0",
                "pgnode_replication_streaming{client=\"slave2\",kind=\"standby\"} 0",
                "pgnode_replication_flush_lag_bytes{client=\"slave\"} 16384",
                "pgnode_replication_flush_lag_bytes{client=\"barman\"} 1048576",
                "pgnode_replication_replay_lag_bytes{client=\"slave\"} 24576",
                "pgnode_replication_replay_lag_seconds{client=\"slave\"} 0",
            ],
        );
        // Barman never replays: no replay lag for it; an absent client has no lag at all.
        assert!(!t.contains("replay_lag_bytes{client=\"barman\"}"), "{t}");
        assert!(!t.contains("replay_lag_seconds{client=\"barman\"}"), "{t}");
        assert!(!t.contains("lag_bytes{client=\"slave2\"}"), "{t}");
    }

    #[test]
    fn slots_reserved_lost_and_missing() {
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        slot(
            &mut s,
            "pg_slot_1",
            Some(&row(&["t", "reserved", "4096", "unlimited"])),
        );
        slot(
            &mut s,
            "barman",
            Some(&row(&["f", "lost", "n/a", "unlimited"])),
        );
        slot(&mut s, "pg_slot_2", None);
        slot(
            &mut s,
            "pg_slot_3",
            Some(&row(&["t", "extended", "70000", "-12"])),
        );
        let t = text(&s);
        has(
            &t,
            &[
                "pgnode_slot_present{slot=\"pg_slot_1\"} 1",
                "pgnode_slot_active{slot=\"pg_slot_1\"} 1",
                "pgnode_slot_lost{slot=\"pg_slot_1\"} 0",
                "pgnode_slot_wal_status{slot=\"pg_slot_1\",status=\"reserved\"} 1",
                "pgnode_slot_retained_bytes{slot=\"pg_slot_1\"} 4096",
                "pgnode_slot_active{slot=\"barman\"} 0",
                "pgnode_slot_lost{slot=\"barman\"} 1",
                "pgnode_slot_wal_status{slot=\"barman\",status=\"lost\"} 1",
                "pgnode_slot_present{slot=\"pg_slot_2\"} 0",
                "pgnode_slot_active{slot=\"pg_slot_2\"} 0",
                "pgnode_slot_lost{slot=\"pg_slot_2\"} 0",
                "pgnode_slot_safe_wal_size_bytes{slot=\"pg_slot_3\"} -12",
            ],
        );
        assert_eq!(t.matches("pgnode_slot_wal_status{").count(), 3, "{t}");
        assert!(!t.contains("retained_bytes{slot=\"barman\"}"), "{t}");
        assert!(
            !t.contains("safe_wal_size_bytes{slot=\"pg_slot_1\"}"),
            "{t}"
        );
    }

    #[test]
    fn the_archiver_counts_and_failing() {
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        let r = row(&[
            "120",
            "000000030000000000000042",
            "4",
            "000000030000000000000043",
            "t",
            "1795690186.5",
        ]);
        archiver(&mut s, &r);
        let t = text(&s);
        assert!(
            t.contains("# TYPE pgnode_archiver_archived_total counter\n"),
            "{t}"
        );
        has(
            &t,
            &[
                "pgnode_archiver_archived_total 120",
                "pgnode_archiver_failed_total 4",
                "pgnode_archiver_failing 1",
                "pgnode_archiver_last_archived_timestamp_seconds 1795690186.5",
            ],
        );
        let mut s = NodeStatus::new("master", "master", "192.168.11.101");
        archiver(&mut s, &row(&["0", "-", "0", "-", "f", ""]));
        let t = text(&s);
        has(&t, &["pgnode_archiver_failing 0"]);
        assert!(!t.contains("last_archived_timestamp"), "{t}");
    }
}
