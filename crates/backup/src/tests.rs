use super::*;
use pgnode_core::config::Role;
use pgnode_core::golden;

fn golden_for(major: u16) {
    golden::check_role(env!("CARGO_MANIFEST_DIR"), Role::Backup, major, |ctx| {
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
fn barman_server_streams_archives_and_keeps_retention() {
    let ctx = golden::ctx(Role::Backup, 15);
    let files = files(&ctx, &Templates::new()).unwrap();
    let by = |p: &str| files.iter().find(|f| f.path.ends_with(p)).unwrap();
    let server = String::from_utf8(by("master.conf").content.clone()).unwrap();
    for want in [
        "[master]",
        "backup_method = postgres",
        "streaming_archiver = on",
        "slot_name = barman",
        "archiver = on",
        "path_prefix = /usr/lib/postgresql/15/bin",
        "retention_policy = RECOVERY WINDOW OF 7 DAYS",
        "minimum_redundancy = 1",
        "last_backup_maximum_age = 7 DAYS",
        "conninfo = host=192.168.11.101 port=5432 user=barman dbname=postgres",
        "streaming_conninfo = host=192.168.11.101 port=5432 user=barman_streaming_user sslmode=verify-full sslrootcert=/etc/ssl/pgnode/ca.crt",
        "dbname=postgres sslmode=verify-full sslrootcert=/etc/ssl/pgnode/ca.crt\n",
    ] {
        assert!(server.contains(want), "missing {want:?} in\n{server}");
    }
    let pgpass = files.iter().find(|f| f.path.ends_with(".pgpass")).unwrap();
    let text = String::from_utf8(pgpass.content.clone()).unwrap();
    assert!(text.contains("192.168.11.101:5432:postgres:barman:FAKEbarman\n"));
    assert!(text.contains(
        "192.168.11.101:5432:replication:barman_streaming_user:FAKEbarmanstreaminguser\n"
    ));
    assert!(pgpass.secret && pgpass.mode == 0o600 && pgpass.owner == "barman");
    let keys = files
        .iter()
        .find(|f| f.path.ends_with("authorized_keys"))
        .unwrap();
    assert!(String::from_utf8(keys.content.clone())
        .unwrap()
        .contains("restrict,from=\"192.168.11.101\",command=\"/usr/local/sbin/pgnode-put-wal-only\" ssh-ed25519 AAAAFAKEarchive"));
    let forced = files
        .iter()
        .find(|f| f.path.ends_with("pgnode-put-wal-only"))
        .unwrap();
    let script = String::from_utf8(forced.content.clone()).unwrap();
    assert!(forced.owner == "root" && forced.mode == 0o755);
    // Exact whole-string matches, never eval: only these two requests run anything.
    assert!(
        script.contains("\"barman put-wal master\")\n    exec /usr/bin/barman put-wal master\n")
    );
    assert!(script.contains(
        "\"barman put-wal master --test\")\n    exec /usr/bin/barman put-wal master --test\n"
    ));
    assert!(!script.contains("eval") && !script.contains("sh -c"));
    // The one read for disaster recovery: an exact string, the newest backup, no client input.
    assert!(script.contains("\"pgnode-restore-stream master\")\n"));
    assert!(script.contains("/usr/bin/barman recover master latest \"$dir/data\" >&2"));
    assert!(!script.contains("$SSH_ORIGINAL_COMMAND\"") && !script.contains("$@"));
    assert!(script.trim_end().ends_with("exit 1"));
}

#[test]
fn parses_barman_check() {
    let out = "Server master:\n\tPostgreSQL: OK\n\tWAL archive: FAILED (please make sure WAL shipping is setup)\n\tbackup maximum age: FAILED (interval provided: 7 days, latest backup age: No available backups)\n\tminimum redundancy requirements: FAILED (have 0 backups, expected at least 1)\n";
    let l = parse_check(out);
    assert_eq!(l.len(), 4);
    assert!(l[0].ok && l[0].item == "PostgreSQL");
    assert!(!l[1].ok && l[1].item == "WAL archive" && l[1].detail.starts_with("FAILED"));
    assert_eq!(l[2].item, "backup maximum age");
    assert!(
        !l[2].ok
            && l[2]
                .detail
                .ends_with("latest backup age: No available backups)"),
        "{:?}",
        l[2]
    );
    assert_eq!(l[3].item, "minimum redundancy requirements");
}

#[test]
fn parses_barman_backup_list() {
    let json = r#"{"master": [{"backup_id": "20261126T054500", "status": "DONE", "end_time": "Thu Nov 26 05:45:10 2026", "end_time_timestamp": "1795671910"}, {"backup_id": "20261125T030000", "status": "FAILED", "end_time": ""}]}"#;
    let b = parse_backups("master", json).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].id.as_str(), b[0].status.as_str()),
        ("20261126T054500", "DONE")
    );
    assert!(parse_backups("master", "{}").unwrap().is_empty());
    assert!(parse_backups("master", "not json").is_err());
}

#[test]
fn incremental_backups_only_from_postgresql_17() {
    let shipped = include_str!("../../../config/cluster.json");
    let mut v: serde_json::Value = serde_json::from_str(shipped).unwrap();
    v["barman"]["incremental_schedule"] = "0 3 * * 1-6".into();
    let text = v.to_string();
    let ctx = golden::ctx_for(&text, "backup", 15);
    let e = files(&ctx, &Templates::new()).unwrap_err().to_string();
    assert!(
        e.contains("barman.incremental_schedule") && e.contains("PostgreSQL 15"),
        "{e}"
    );
    let ctx = golden::ctx_for(&text, "backup", 17);
    let f = files(&ctx, &Templates::new()).unwrap();
    let cron = f
        .iter()
        .find(|f| f.path.ends_with("pgnode-barman"))
        .unwrap();
    let cron = String::from_utf8(cron.content.clone()).unwrap();
    assert!(
        cron.contains("0 3 * * 1-6 barman [ -x /usr/bin/barman ] && /usr/bin/barman -q backup --incremental latest master"),
        "{cron}"
    );
    let server = String::from_utf8(f[1].content.clone()).unwrap();
    assert!(
        server.contains("local_staging_path = /var/lib/barman/pgnode-staging"),
        "{server}"
    );
}

#[test]
fn parses_a_backups_timeline_from_show_backup() {
    let out = "Backup 20261126T122036:\n  Server Name            : master\n  Status                 : DONE\n  PostgreSQL Version     : 170007\n  Timeline               : 3\n  Begin WAL              : 000000030000000000000004\n";
    assert_eq!(parse_show_backup_timeline(out), Some(3));
    assert_eq!(parse_show_backup_timeline("Status : DONE\n"), None);
}

#[test]
fn parses_a_backups_timeline() {
    let info =
        "backup_label=None\nbegin_wal=000000020000000000000007\ntimeline=2\nversion=150010\n";
    assert_eq!(parse_backup_timeline(info), Some(2));
    assert_eq!(parse_backup_timeline("status=DONE\n"), None);
}

#[test]
fn only_partial_duplicates_are_set_aside() {
    assert!(is_partial_duplicate(
        "00000008000000000000002D.partial.20261126T113228Z.duplicate"
    ));
    assert!(!is_partial_duplicate(
        "00000008000000000000002D.20261126T113228Z.duplicate"
    ));
    assert!(!is_partial_duplicate(
        "00000008000000000000002D.partial.20261126T113228Z.unknown"
    ));
}
