//! The backup node's facts as Prometheus samples (`pgnode status --prometheus`), made from what
//! the status probes already parsed: `barman check` lines, the backup list, the drill's state.

use std::collections::BTreeMap;

use pgnode_core::status::NodeStatus;

use crate::barman::{Backup, CheckLine};
use crate::restore::state::DrillState;

/// The `barman check` line that says Barman's receive-wal process runs.
const RECEIVE_WAL_RUNNING: &str = "receive-wal running";

/// Each `barman check` line, and how many fail. Nothing when barman check printed no line
/// (the status item `barman check` is then failing).
pub(super) fn check(s: &mut NodeStatus, lines: &[CheckLine]) {
    if lines.is_empty() {
        return;
    }
    for l in lines {
        s.flag("pgnode_barman_check_ok", &[("check", &l.item)], l.ok);
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    s.metric("pgnode_barman_check_failed", &[], failed as f64);
}

/// receive-wal is OK only when `barman check` says it runs and nothing (Barman's log, the
/// primary's timeline history) says it cannot stream.
pub(super) fn receive_wal(s: &mut NodeStatus, lines: Option<&[CheckLine]>, cannot_stream: bool) {
    let running = lines
        .unwrap_or_default()
        .iter()
        .any(|l| l.item == RECEIVE_WAL_RUNNING && l.ok);
    s.flag(
        "pgnode_barman_receive_wal_ok",
        &[],
        running && !cannot_stream,
    );
}

/// The backups by status (DONE always, 0 when none), and the end of the newest DONE one.
pub(super) fn backups(s: &mut NodeStatus, list: &[Backup]) {
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::from([("DONE", 0)]);
    for b in list {
        *by_status.entry(b.status.as_str()).or_default() += 1;
    }
    for (status, n) in by_status {
        s.metric("pgnode_barman_backups", &[("status", status)], n as f64);
    }
    let newest = list
        .iter()
        .filter(|b| b.status == "DONE")
        .filter_map(|b| b.end_epoch)
        .max();
    if let Some(t) = newest {
        s.metric("pgnode_barman_last_backup_timestamp_seconds", &[], t as f64);
    }
}

/// The last drill (when one ran): its start and outcome; and the judged line (failed or stale: 0).
pub(super) fn drill(s: &mut NodeStatus, last: Option<&DrillState>, judged_ok: bool) {
    if let Some(d) = last {
        let started = d.started as f64;
        s.metric("pgnode_restore_drill_last_timestamp_seconds", &[], started);
        s.flag("pgnode_restore_drill_success", &[], d.ok);
    }
    s.flag("pgnode_restore_drill_ok", &[], judged_ok);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barman::parse_check;
    use pgnode_core::metrics;

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

    fn has(t: &str, lines: &[&str]) {
        for l in lines {
            assert!(t.contains(&format!("{l}\n")), "{l:?} not in:\n{t}");
        }
    }

    const CHECK: &str = "Server master:
\tPostgreSQL: OK
\tWAL archive: FAILED (please make sure WAL shipping is setup)
\tbackup maximum age: OK (interval provided: 1 day, latest backup age: 2 hours)
\treceive-wal running: OK
";

    fn node() -> NodeStatus {
        NodeStatus::new("backup", "backup", "192.168.11.103")
    }

    #[test]
    fn each_check_line_and_the_failures() {
        let mut s = node();
        check(&mut s, &parse_check(CHECK));
        let t = text(&s);
        has(
            &t,
            &[
                "pgnode_barman_check_ok{check=\"PostgreSQL\"} 1",
                "pgnode_barman_check_ok{check=\"WAL archive\"} 0",
                "pgnode_barman_check_ok{check=\"backup maximum age\"} 1",
                "pgnode_barman_check_ok{check=\"receive-wal running\"} 1",
                "pgnode_barman_check_failed 1",
            ],
        );
        let mut s = node();
        check(&mut s, &[]);
        assert!(s.samples.is_empty());
    }

    #[test]
    fn receive_wal_needs_its_check_line_and_no_stuck_verdict() {
        let lines = parse_check(CHECK);
        let ok = |lines: Option<&[CheckLine]>, stuck| {
            let mut s = node();
            receive_wal(&mut s, lines, stuck);
            s.samples[0].value
        };
        assert_eq!(ok(Some(&lines), false), 1.0);
        assert_eq!(ok(Some(&lines), true), 0.0);
        assert_eq!(ok(None, false), 0.0);
        let failing = parse_check("Server master:\n\treceive-wal running: FAILED\n");
        assert_eq!(ok(Some(&failing), false), 0.0);
    }

    fn backup(id: &str, status: &str, end: Option<u64>) -> Backup {
        Backup {
            id: id.into(),
            status: status.into(),
            end_time: String::new(),
            end_epoch: end,
        }
    }

    #[test]
    fn backups_by_status_and_the_newest_done() {
        let mut s = node();
        let list = [
            backup("20261125T050000", "DONE", Some(1_795_568_400)),
            backup("20261126T050000", "DONE", Some(1_795_654_800)),
            backup("20261126T110000", "FAILED", None),
        ];
        backups(&mut s, &list);
        let t = text(&s);
        has(
            &t,
            &[
                "pgnode_barman_backups{status=\"DONE\"} 2",
                "pgnode_barman_backups{status=\"FAILED\"} 1",
                "pgnode_barman_last_backup_timestamp_seconds 1795654800",
            ],
        );
        let mut s = node();
        backups(&mut s, &[]);
        let t = text(&s);
        has(&t, &["pgnode_barman_backups{status=\"DONE\"} 0"]);
        assert!(!t.contains("last_backup"), "{t}");
    }

    #[test]
    fn the_drill_outcome_and_its_judgement() {
        let mut s = node();
        drill(&mut s, None, true);
        let t = text(&s);
        has(&t, &["pgnode_restore_drill_ok 1"]);
        assert!(
            !t.contains("drill_success") && !t.contains("drill_last"),
            "{t}"
        );
        let last = DrillState {
            started: 1_795_690_186,
            ok: true,
            ..Default::default()
        };
        let mut s = node();
        // Passed, but older than twice its schedule: judged stale.
        drill(&mut s, Some(&last), false);
        has(
            &text(&s),
            &[
                "pgnode_restore_drill_last_timestamp_seconds 1795690186",
                "pgnode_restore_drill_success 1",
                "pgnode_restore_drill_ok 0",
            ],
        );
    }
}
