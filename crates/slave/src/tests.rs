use super::*;
use pgnode_core::config::Role;
use pgnode_core::golden;
use std::path::Path;

fn golden_for(major: u16) {
    golden::check_role(env!("CARGO_MANIFEST_DIR"), Role::Slave, major, |ctx| {
        let t = Templates::new();
        let mut files = files(ctx, &t).unwrap();
        files.push(standby_marker(ctx, &t).unwrap());
        files
    });
}

#[test]
fn golden_pg15() {
    golden_for(15);
}

#[test]
fn golden_pg17() {
    golden_for(17);
}

#[test]
fn golden_pg11_uses_recovery_conf() {
    golden_for(11);
    let ctx = golden::ctx(Role::Slave, 11);
    let marker = standby_marker(&ctx, &Templates::new()).unwrap();
    assert!(marker.path.ends_with("11/main/recovery.conf"));
    assert!(String::from_utf8(marker.content)
        .unwrap()
        .contains("standby_mode = 'on'"));
}

#[test]
fn standby_settings_point_at_the_master_through_the_slot() {
    let ctx = golden::ctx(Role::Slave, 15);
    let files = files(&ctx, &Templates::new()).unwrap();
    let standby = files
        .iter()
        .find(|f| f.path.ends_with("conf.d/pgnode-standby.conf"))
        .unwrap();
    let text = String::from_utf8(standby.content.clone()).unwrap();
    assert!(text.contains(
        "host=192.168.11.101 port=5432 user=streaming_user passfile=/var/lib/postgresql/.pgpass"
    ));
    assert!(text.contains("primary_slot_name = 'pg_slot_1'"));
    assert!(
        !text.contains("FAKE"),
        "password must not be in the config file"
    );
    let pgpass = files.iter().find(|f| f.path.ends_with(".pgpass")).unwrap();
    assert_eq!(pgpass.mode, 0o600);
    assert!(String::from_utf8(pgpass.content.clone())
        .unwrap()
        .contains("192.168.11.101:5432:replication:streaming_user:FAKEstreaminguser\n"));
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pgnode-fresh-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for p in ["base/1", "base/4", "base/5", "pg_tblspc"] {
        std::fs::create_dir_all(d.join(p)).unwrap();
    }
    std::fs::write(d.join("base/5/1259"), "").unwrap();
    std::fs::write(d.join("base/5/2619_fsm"), "").unwrap();
    d
}

#[test]
fn only_an_untouched_initdb_cluster_counts_as_fresh() {
    let d = scratch("initdb");
    assert!(clone::is_fresh_cluster(&d).unwrap());
    std::fs::write(d.join("base/5/16385"), "").unwrap();
    assert!(
        !clone::is_fresh_cluster(&d).unwrap(),
        "a user table makes it precious"
    );
    std::fs::remove_dir_all(&d).unwrap();

    let d = scratch("db");
    std::fs::create_dir_all(d.join("base/16390")).unwrap();
    assert!(
        !clone::is_fresh_cluster(&d).unwrap(),
        "a user database makes it precious"
    );
    std::fs::remove_dir_all(&d).unwrap();

    let d = scratch("standby");
    std::fs::write(d.join("standby.signal"), "").unwrap();
    assert!(
        !clone::is_fresh_cluster(&d).unwrap(),
        "a standby is not Debian's fresh cluster"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn set_aside_keeps_the_directory_beside_the_original() {
    let p = set_aside_path(Path::new("/var/lib/postgresql/15/main"), 1700000000);
    assert_eq!(
        p,
        Path::new("/var/lib/postgresql/15/main.pgnode-set-aside-1700000000")
    );
}

fn golden_two_standbys(name: &str) {
    golden::check_node(
        env!("CARGO_MANIFEST_DIR"),
        "two-standbys",
        golden::TWO_STANDBYS,
        name,
        15,
        |ctx| {
            let t = Templates::new();
            let mut files = files(ctx, &t).unwrap();
            files.push(standby_marker(ctx, &t).unwrap());
            files
        },
    );
}

#[test]
fn golden_two_standbys_pg15() {
    golden_two_standbys("slave");
    golden_two_standbys("slave2");
}

#[test]
fn each_standby_streams_through_its_own_slot() {
    let ctx = golden::ctx_for(golden::TWO_STANDBYS, "slave2", 15);
    let files = files(&ctx, &Templates::new()).unwrap();
    let text = |end: &str| {
        String::from_utf8(
            files
                .iter()
                .find(|f| f.path.ends_with(end))
                .unwrap()
                .content
                .clone(),
        )
        .unwrap()
    };
    let standby = text("conf.d/pgnode-standby.conf");
    assert!(
        standby.contains("primary_slot_name = 'pg_slot_slave2'"),
        "{standby}"
    );
    assert!(standby.contains("application_name=slave2"), "{standby}");
    // Either peer may follow this node after a switchover.
    let hba = text("pg_hba.conf");
    for addr in ["192.168.11.101", "192.168.11.102"] {
        assert!(hba.contains(&format!("streaming_user  {addr}/32")), "{hba}");
    }
    assert!(!hba.contains("192.168.11.104/32"), "{hba}");
}
