use super::*;

const STREAM: &str = "ok 1 1764150000.100000\nok 2 1764150000.200000\n\
fail 3 1764150000.300000 psql:<stdin>:5: ERROR:  duplicate key value violates unique constraint\n\
ok 4 1764150000.400000\nlost 5 1764150061.000000\nend lost 5\n";

#[test]
fn parses_outcomes() {
    let r = LedgerReport::parse(STREAM);
    assert_eq!(r.acked.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2, 4]);
    assert_eq!(r.acked[1].at, 1764150000.2);
    assert_eq!(
        r.failed,
        [(
            3,
            "psql:<stdin>:5: ERROR:  duplicate key value violates unique constraint".to_string()
        )]
    );
    assert_eq!(r.in_doubt, [5]);
    assert_eq!(r.end, "lost");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn duplicates_gaps_and_garbage_are_problems() {
    let r = LedgerReport::parse("ok 1 1.0\nok 1 2.0\nok 4 3.0\nok x 4.0\nok 2 5.0\nend count 4\n");
    assert_eq!(r.acked.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 4, 2]);
    assert_eq!(r.gaps(), [3]);
    assert_eq!(
        r.problems,
        [
            "id 1 reported twice",
            "unparsable line: ok x 4.0",
            "id 2 reported after 4",
            "id 3 has no outcome"
        ]
    );
}

#[test]
fn compare_lists_missing_and_phantom_ids() {
    let r = LedgerReport::parse(STREAM);
    let all: BTreeSet<u64> = [1, 2, 4, 5].into();
    assert_eq!(r.compare(&all, "master", "e2e_ledger"), Ok(3));
    // The in-doubt id may be there or not.
    assert_eq!(r.compare(&[1, 2, 4].into(), "master", "e2e_ledger"), Ok(3));
    let err = r
        .compare(&[1, 3].into(), "slave", "e2e_ledger")
        .unwrap_err();
    assert_eq!(
        err.message,
        "2 of 3 acknowledged commits missing from e2e_ledger on slave"
    );
    assert_eq!(
        err.evidence,
        "missing acknowledged ids: 2, 4\npresent although their insert failed: 3"
    );
}

#[test]
fn ranges_compress() {
    assert_eq!(ranges(&[]), "none");
    assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
}

#[test]
fn table_names() {
    assert!(check_table_name("e2e_ledger_1").is_ok());
    assert!(check_table_name("x; drop table y").is_err());
    assert!(check_table_name("Upper").is_err());
    assert!(check_table_name("").is_err());
}

/// Both client scripts are valid bash (the lab runs them for real; this catches a syntax slip
/// early).
#[test]
fn client_scripts_parse() {
    for script in [CLIENT, FOLLOW] {
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The following client's stream: acks name their server, an id lost in a reconnect is in
/// doubt, and the ids go on after it.
#[test]
fn a_following_client_names_the_server_of_each_ack() {
    let r = LedgerReport::parse(
        "ok 1 10.0 192.168.11.101\nok 2 10.1 192.168.11.101\nlost 3 10.2\nok 4 14.5 192.168.11.102\nend stop 4\n",
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.acked.len(), 3);
    assert_eq!(r.in_doubt, [3]);
    assert_eq!(r.servers[&1], "192.168.11.101");
    assert_eq!(r.servers[&4], "192.168.11.102");
    // The local client prints no server.
    let r = LedgerReport::parse("ok 1 10.0\nend count 1\n");
    assert!(r.servers.is_empty());
}
