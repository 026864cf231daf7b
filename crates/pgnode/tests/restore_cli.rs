//! `pgnode restore` bad usage on the built binary: each case exits 2 with a message naming
//! the problem, before anything is looked at on the machine (argument checks come first).

use std::process::Command;

const SHIPPED: &str = include_str!("../../../config/cluster.json");

fn run(args: &[&str]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("pgnode-restore-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("cluster.json");
    std::fs::write(&cfg, SHIPPED).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgnode"))
        .arg("restore")
        .args(args)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_restore_usage_exits_2_and_names_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "exactly one of --latest, --target-time"),
        (
            &["--latest", "--target-name", "x"],
            "got --latest and --target-name",
        ),
        (
            &["--target-time", "yesterday"],
            "--target-time \"yesterday\"",
        ),
        (&["--target-time", "2026-11-26 10:00:00"], "no time zone"),
        (
            &["--target-time", "2026-02-30 10:00:00+00"],
            "day 30 is out of range",
        ),
        (&["--target-lsn", "0/XYZ"], "--target-lsn \"0/XYZ\""),
        (&["--target-name", "it's"], "--target-name"),
        (&["--latest", "--backup", "../etc"], "--backup \"../etc\""),
        (
            &["--discard", "--latest"],
            "'--discard' cannot be used with '--latest'",
        ),
        (
            &["--drill", "--keep"],
            "'--drill' cannot be used with '--keep'",
        ),
        // Valid flags on a machine that is not the backup node (no test machine holds
        // 192.168.11.103 outside the lab's own namespace).
        (&["--latest"], "restores run on the backup node"),
    ];
    for (args, says) in cases {
        let (code, err) = run(args);
        assert_eq!(code, 2, "{args:?}: exit {code}, stderr: {err}");
        assert!(err.contains(says), "{args:?}: want {says:?} in: {err}");
    }
}
