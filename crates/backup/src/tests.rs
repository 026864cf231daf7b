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
    let server = String::from_utf8(files[1].content.clone()).unwrap();
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
        "streaming_conninfo = host=192.168.11.101 port=5432 user=barman_streaming_user",
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
        .contains("restrict,from=\"192.168.11.101\" ssh-ed25519 AAAAFAKEarchive"));
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
