use super::*;

fn flags() -> Flags {
    Flags::default()
}

#[test]
fn exactly_one_target() {
    let e = request(&flags()).unwrap_err();
    assert!(
        e.contains("exactly one of") && e.contains("none was given"),
        "{e}"
    );
    let f = Flags {
        latest: true,
        target_lsn: Some("0/1".into()),
        ..flags()
    };
    let e = request(&f).unwrap_err();
    assert!(e.contains("got --latest and --target-lsn"), "{e}");
    let f = Flags {
        latest: true,
        keep: true,
        ..flags()
    };
    let r = request(&f).unwrap();
    assert_eq!(r.target, Target::Latest);
    assert!(r.keep);
}

#[test]
fn times_need_a_zone_and_valid_fields() {
    let t = |s: &str| parse_time(s);
    assert_eq!(
        t("2026-11-26 10:49:46+00").unwrap(),
        Target::Time {
            text: "2026-11-26 10:49:46+00:00".into(),
            epoch: 1_795_690_186
        }
    );
    // The same instant in another zone and spelling.
    match t("2026-11-26T11:49:46.123+01:00").unwrap() {
        Target::Time { text, epoch } => {
            assert_eq!(epoch, 1_795_690_186);
            assert_eq!(text, "2026-11-26 11:49:46.123+01:00");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t("2026-11-26 05:49:46-0500").unwrap(),
        Target::Time {
            epoch: 1_795_690_186,
            ..
        }
    ));
    assert!(matches!(
        t("2026-11-26 10:49:46 UTC").unwrap(),
        Target::Time {
            epoch: 1_795_690_186,
            ..
        }
    ));
    assert!(matches!(
        t("2026-11-26 10:49:46Z").unwrap(),
        Target::Time { .. }
    ));
    for (bad, why) in [
        ("2026-11-26 10:49:46", "no time zone"),
        ("yesterday", "no time zone"),
        ("2026-11-26+00", "no time of day"),
        ("2026-02-29 10:00:00+00", "day 29 is out of range"),
        ("2026-13-01 10:00:00+00", "month 13"),
        ("2026-11-26 24:00:00+00", "hour 24"),
        ("2026-11-26 10:61:00+00", "minute 61"),
        ("2026-11-26 10:00+00", "malformed"),
        ("2026-11-26 10:00:00.1234567+00", "fraction"),
        ("26-11-26 10:00:00+00", "year"),
    ] {
        let e = t(bad).unwrap_err();
        assert!(e.contains(why) && e.contains("--target-time"), "{bad}: {e}");
    }
    assert!(t("2024-02-29 00:00:00+00").is_ok());
}

#[test]
fn lsn_names_and_backup_ids() {
    assert_eq!(
        parse_lsn("0/3000060").unwrap(),
        Target::Lsn {
            text: "0/3000060".into(),
            value: 0x3000060
        }
    );
    assert!(
        matches!(parse_lsn("a/ff").unwrap(), Target::Lsn { value, .. } if value == (0xa << 32) | 0xff)
    );
    for bad in ["", "3000060", "0/", "/1", "0/123456789", "g/1", "0/1/2"] {
        let e = parse_lsn(bad).unwrap_err();
        assert!(e.contains("--target-lsn"), "{bad}: {e}");
    }
    assert_eq!(
        parse_name("before-upgrade").unwrap(),
        Target::Name("before-upgrade".into())
    );
    for bad in ["", "a'b", "a\\b", "a\nb", &"x".repeat(64)] {
        assert!(
            parse_name(bad).unwrap_err().contains("--target-name"),
            "{bad}"
        );
    }
    for ok in ["20261126T104900", "latest", "oldest"] {
        check_backup_id(ok).unwrap();
    }
    for bad in ["2026112T104900", "20261126-104900", "../x", "all"] {
        assert!(
            check_backup_id(bad).unwrap_err().contains("--backup"),
            "{bad}"
        );
    }
    let f = Flags {
        target_name: Some("p".into()),
        backup: Some("nope".into()),
        ..flags()
    };
    assert!(request(&f).unwrap_err().contains("--backup \"nope\""));
}

fn b(id: &str, status: &str, end: u64) -> Backup {
    Backup {
        id: id.into(),
        status: status.into(),
        end_time: format!("end of {id}"),
        end_epoch: (status == "DONE").then_some(end),
    }
}

#[test]
fn chooses_the_backup_from_the_target() {
    let list = vec![
        b("20261126T100000", "DONE", 1000),
        b("20261126T110000", "DONE", 2000),
        b("20261126T120000", "FAILED", 0),
    ];
    let req = |target, backup: Option<&str>| Request {
        target,
        backup: backup.map(String::from),
        keep: false,
    };
    assert_eq!(
        choose_backup(&req(Target::Latest, None), &list).unwrap().id,
        "20261126T110000"
    );
    let at = |epoch| Target::Time {
        text: "T".into(),
        epoch,
    };
    assert_eq!(
        choose_backup(&req(at(1500), None), &list).unwrap().id,
        "20261126T100000"
    );
    assert_eq!(
        choose_backup(&req(at(2500), None), &list).unwrap().id,
        "20261126T110000"
    );
    let e = choose_backup(&req(at(999), None), &list).unwrap_err();
    assert!(e.contains("no DONE backup ended before T"), "{e}");
    assert_eq!(
        choose_backup(&req(Target::Latest, Some("oldest")), &list)
            .unwrap()
            .id,
        "20261126T100000"
    );
    let e = choose_backup(&req(Target::Latest, Some("20261126T120000")), &list).unwrap_err();
    assert!(e.contains("is FAILED, not DONE"), "{e}");
    let e = choose_backup(&req(Target::Latest, Some("20261126T130000")), &list).unwrap_err();
    assert!(e.contains("there is no backup 20261126T130000"), "{e}");
    let e = choose_backup(&req(Target::Latest, None), &[]).unwrap_err();
    assert!(e.contains("no DONE backup"), "{e}");
}
