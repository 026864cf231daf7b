//! Argument checks and refusals of `pgnode restore --to-node`.

use super::*;
use pgnode_core::config::Cluster;

fn cluster() -> Cluster {
    let text = include_str!("../../../../config/cluster.json");
    Cluster::parse(text, "config/cluster.json").unwrap()
}

#[test]
fn validate_accepts_the_master_on_the_master() {
    let c = cluster();
    let here = c.named("master");
    assert_eq!(
        validate(&c, "master", here).unwrap().name.as_str(),
        "master"
    );
}

#[test]
fn validate_refuses_unknown_nodes_standbys_and_the_wrong_machine() {
    let c = cluster();
    let e = validate(&c, "nosuch", c.named("master")).unwrap_err();
    assert!(
        e.contains("no such node") && e.contains("master, slave, backup"),
        "{e}"
    );
    let e = validate(&c, "slave", c.named("slave")).unwrap_err();
    assert!(e.contains("is a slave, not the master"), "{e}");
    let e = validate(&c, "backup", c.named("backup")).unwrap_err();
    assert!(e.contains("is a backup, not the master"), "{e}");
    let e = validate(&c, "master", c.named("backup")).unwrap_err();
    assert!(e.contains("this machine is backup"), "{e}");
    let e = validate(&c, "master", None).unwrap_err();
    assert!(e.contains("no node of the config"), "{e}");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgnode-to-node-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn refuses_an_active_service_and_a_live_postmaster() {
    let d = tmp("live");
    assert!(refuse_if_running(&d, false).is_ok());
    let e = refuse_if_running(&d, true).unwrap_err().to_string();
    assert!(e.contains("service is active"), "{e}");
    // This test process is alive: a postmaster.pid naming it must refuse.
    fs::write(
        d.join("postmaster.pid"),
        format!("{}\n/var/lib/x\n", std::process::id()),
    )
    .unwrap();
    let e = refuse_if_running(&d, false).unwrap_err().to_string();
    assert!(e.contains("live process"), "{e}");
    // A stale pid file (no such process) does not stand in the way.
    fs::write(d.join("postmaster.pid"), "4194999\n").unwrap();
    assert!(refuse_if_running(&d, false).is_ok());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn set_aside_keeps_the_name_and_adds_the_epoch() {
    assert_eq!(
        set_aside_path(Path::new("/var/lib/postgresql/15/main"), 1700000000),
        PathBuf::from("/var/lib/postgresql/15/main.pgnode-set-aside-1700000000")
    );
}

#[test]
fn wal_file_names() {
    assert!(is_wal_file("000000010000000000000003"));
    assert!(is_wal_file("00000002.history"));
    for no in [
        "archive_status",
        "00000001000000000000000",
        "RECOVERYXLOG",
        "x.history",
    ] {
        assert!(!is_wal_file(no), "{no}");
    }
}

#[test]
fn auto_conf_drops_barmans_recovery_settings_and_reads_the_copied_wal() {
    let text = "# Do not edit\narchive_command = false\nwork_mem = '8MB'\n#restore_command = 'x'\nrecovery_target_time = 'y'\n";
    let out = fix_auto_conf(text, Path::new("/w"));
    assert!(out.contains("# pgnode restore --to-node: archive_command = false\n"));
    assert!(out.contains("\nwork_mem = '8MB'\n"));
    assert!(out.contains("\n#restore_command = 'x'\n"));
    assert!(out.contains("# pgnode restore --to-node: recovery_target_time = 'y'\n"));
    assert!(out.ends_with("restore_command = 'cp /w/%f \"%p\"'\n"));
    assert_eq!(stream_request("master"), "pgnode-restore-stream master");
}
