use super::*;
use pgnode_core::golden;

fn golden_for(major: u16) {
    golden::check_role(env!("CARGO_MANIFEST_DIR"), Role::Master, major, |ctx| {
        files(ctx, &Templates::new()).unwrap()
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
fn golden_pg11_has_no_wal_keep_size() {
    golden_for(11);
}

#[test]
fn rendered_primary_config_is_safe() {
    let ctx = golden::ctx(Role::Master, 15);
    let files = files(&ctx, &Templates::new()).unwrap();
    let by = |p: &str| files.iter().find(|f| f.path.ends_with(p)).unwrap();
    let hba = String::from_utf8(by("pg_hba.conf").content.clone()).unwrap();
    for line in hba
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w[0] == "local" {
            assert_eq!(w.last(), Some(&"peer"), "{line}");
            continue;
        }
        // Every network line: TLS only.
        assert_eq!(w[0], "hostssl", "{line}");
        assert_eq!(w.last(), Some(&"scram-sha-256"), "{line}");
        assert!(w[3].ends_with("/32") || w[3] == "::1/128", "{line}");
    }
    assert!(!hba
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("trust")));
    assert!(hba.contains("hostssl replication  streaming_user  192.168.11.102/32  scram-sha-256"));
    assert!(hba
        .contains("hostssl replication  barman_streaming_user  192.168.11.103/32  scram-sha-256"));
    let conf = String::from_utf8(by("pgnode.conf").content.clone()).unwrap();
    assert!(conf.contains("ssl = on\nssl_cert_file = '/etc/ssl/pgnode/server.crt'"));
    let tls_key = by("server.key");
    assert!(tls_key.secret && tls_key.mode == 0o600 && tls_key.owner == "postgres");
    assert!(conf.contains("max_slot_wal_keep_size = '4096MB'"));
    assert!(conf.contains("archive_command = 'barman-wal-archive 192.168.11.103 master %p'"));
    assert!(conf.contains("listen_addresses = 'localhost,192.168.11.101'"));
    let key = files
        .iter()
        .find(|f| f.path.ends_with("id_ed25519"))
        .unwrap();
    assert!(key.secret && key.mode == 0o600);
}

#[test]
fn barman_gets_backup_functions_per_major() {
    let (f15, r15) = sql::barman_privileges(15);
    assert!(f15.contains(&"pg_backup_start(text, boolean)") && !r15.contains(&"pg_checkpoint"));
    assert_eq!(r15, ["pg_read_all_settings", "pg_read_all_stats"]);
    let (f14, r14) = sql::barman_privileges(14);
    assert!(
        f14.contains(&"pg_start_backup(text, boolean, boolean)") && !r14.contains(&"pg_checkpoint")
    );
}

#[test]
fn golden_two_standbys_pg15() {
    golden::check_node(
        env!("CARGO_MANIFEST_DIR"),
        "two-standbys",
        golden::TWO_STANDBYS,
        "master",
        15,
        |ctx| files(ctx, &Templates::new()).unwrap(),
    );
}

#[test]
fn each_standby_gets_its_pg_hba_line_and_slot_step() {
    let ctx = golden::ctx_for(golden::TWO_STANDBYS, "master", 15);
    let files = files(&ctx, &Templates::new()).unwrap();
    let hba = files
        .iter()
        .find(|f| f.path.ends_with("pg_hba.conf"))
        .unwrap();
    let hba = String::from_utf8(hba.content.clone()).unwrap();
    for addr in ["192.168.11.102", "192.168.11.104"] {
        let line = format!("hostssl replication  streaming_user  {addr}/32  scram-sha-256");
        assert!(hba.contains(&line), "missing {line} in\n{hba}");
    }
    let t = Templates::new();
    let steps = converge(&ctx, &t).unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    for slot in ["pg_slot_1", "pg_slot_slave2", "barman"] {
        assert!(
            names.iter().any(|n| n.contains(&format!("slot {slot}"))),
            "no step for slot {slot}: {names:?}"
        );
    }
}
