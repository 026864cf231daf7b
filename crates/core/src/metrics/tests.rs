use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

#[test]
fn one_help_and_type_per_family_sorted_and_escaped() {
    let samples = vec![
        Sample::new("pgnode_slot_active", &[("slot", "pg_slot_2")], 0.0),
        Sample::new("pgnode_archiver_failed_total", &[], 3.0),
        Sample::new("pgnode_slot_active", &[("slot", "pg_slot_1")], 1.0),
        Sample::new(
            "pgnode_status_check_ok",
            &[("check", "a \"quoted\" C:\\path\nnext")],
            1.0,
        ),
    ];
    let text = render(&samples);
    let want = "\
# HELP pgnode_archiver_failed_total Failed archive_command attempts (pg_stat_archiver).
# TYPE pgnode_archiver_failed_total counter
pgnode_archiver_failed_total 3
# HELP pgnode_slot_active 1 when a client streams through the slot.
# TYPE pgnode_slot_active gauge
pgnode_slot_active{slot=\"pg_slot_1\"} 1
pgnode_slot_active{slot=\"pg_slot_2\"} 0
# HELP pgnode_status_check_ok 1 when the status item named check is OK (items sharing a name: the lowest).
# TYPE pgnode_status_check_ok gauge
pgnode_status_check_ok{check=\"a \\\"quoted\\\" C:\\\\path\\nnext\"} 1
";
    assert_eq!(text, want);
}

#[test]
fn a_repeated_series_keeps_its_lowest_value_and_nan_is_never_written() {
    let samples = vec![
        Sample::new("pgnode_status_check_ok", &[("check", "receive-wal")], 1.0),
        Sample::new("pgnode_status_check_ok", &[("check", "receive-wal")], 0.0),
        Sample::new("pgnode_status_check_ok", &[("check", "receive-wal")], 1.0),
        Sample::new("pgnode_slot_retained_bytes", &[("slot", "x")], f64::NAN),
        Sample::new(
            "pgnode_slot_safe_wal_size_bytes",
            &[("slot", "x")],
            f64::INFINITY,
        ),
        Sample::new("pgnode_status_timestamp_seconds", &[], 1_795_690_186.25),
    ];
    let text = render(&samples);
    assert!(
        text.contains("pgnode_status_check_ok{check=\"receive-wal\"} 0\n"),
        "{text}"
    );
    assert_eq!(text.matches("pgnode_status_check_ok{").count(), 1, "{text}");
    assert!(
        !text.contains("retained") && !text.contains("NaN"),
        "{text}"
    );
    assert!(text.contains("{slot=\"x\"} +Inf\n"), "{text}");
    assert!(
        text.contains("pgnode_status_timestamp_seconds 1795690186.25\n"),
        "{text}"
    );
}

#[test]
fn the_summary_reports_health_each_item_and_the_node() {
    let mut s = NodeStatus::new("backup", "backup", "192.168.11.103");
    s.started = UNIX_EPOCH + Duration::from_millis(1_795_690_186_500);
    s.add("barman check", "12 checks OK", true);
    s.add("receive-wal", "CANNOT STREAM: ...", false);
    s.add("receive-wal", "fine", true);
    let text = render(&summary(&s, 0.75));
    for want in [
        "pgnode_status_timestamp_seconds 1795690186.5\n",
        "pgnode_status_collect_duration_seconds 0.75\n",
        "pgnode_status_healthy 0\n",
        "pgnode_status_check_ok{check=\"barman check\"} 1\n",
        "pgnode_status_check_ok{check=\"receive-wal\"} 0\n",
        "pgnode_node_info{node=\"backup\",role=\"backup\",address=\"192.168.11.103\"} 1\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

#[test]
fn the_registry_is_well_formed() {
    let mut seen = BTreeSet::new();
    for f in FAMILIES {
        assert!(seen.insert(f.name), "{} twice", f.name);
        assert!(f.name.starts_with("pgnode_"), "{}", f.name);
        assert!(
            f.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            f.name
        );
        assert_eq!(
            f.name.ends_with("_total"),
            f.kind == Kind::Counter,
            "{}",
            f.name
        );
        assert!(
            f.help.ends_with('.') && !f.help.contains('\n'),
            "{}",
            f.name
        );
    }
}

#[test]
fn the_file_is_written_whole_with_mode_0644_and_needs_its_directory() {
    let d = std::env::temp_dir().join(format!("pgnode-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("pgnode.prom");
    write(&f, "pgnode_status_healthy 1\n").unwrap();
    write(&f, "pgnode_status_healthy 0\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "pgnode_status_healthy 0\n"
    );
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(
        std::fs::read_dir(&d).unwrap().count(),
        1,
        "a temp file was left"
    );
    let e = write(&d.join("missing/pgnode.prom"), "x\n").unwrap_err();
    assert!(
        crate::step::chain(&e).contains("missing/pgnode.prom"),
        "{e}"
    );
    assert!(!d.join("missing").exists());
    std::fs::remove_dir_all(&d).unwrap();
}
