use std::io;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::target::{Command, Output, Target};
use crate::{fail, Ctx};

/// A target that answers every command with `echo`'s output: enough to drive the runner.
struct Echo;

impl Target for Echo {
    fn exec(&self, node: &str, cmd: &Command) -> io::Result<Output> {
        Ok(Output {
            code: Some(0),
            stdout: format!("{node}: {}\n", cmd.display()),
            stderr: String::new(),
        })
    }
    fn name(&self) -> &str {
        "echo"
    }
}

fn cluster() -> Cluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster.json");
    Cluster::load(&path, Arc::new(Echo)).unwrap()
}

fn passes(cx: &mut Ctx) -> crate::Result<()> {
    let out = cx.cluster.primary().ok(&["echo", "a b"])?;
    cx.note(out.trim_end());
    Ok(())
}

fn fails(cx: &mut Ctx) -> crate::Result<()> {
    cx.note("before");
    fail("the thing is broken", "line 1\nline 2")
}

fn panics(_: &mut Ctx) -> crate::Result<()> {
    panic!("boom")
}

const CHECKS: &[Check] = &[
    crate::check!("passes", passes),
    crate::check!("fails", fails),
    crate::check!("panics", panics),
];

/// The report has the bash suite's shape, line for line (timings masked).
#[test]
fn report_format() {
    let mut out = Vec::new();
    let ok = run(&cluster(), CHECKS, &mut out).unwrap();
    assert!(!ok);
    let text = String::from_utf8(out).unwrap();
    let masked: String = text
        .lines()
        .map(|l| match l.rfind('(') {
            Some(i) if l.ends_with("s)") => format!("{}(Ns)\n", &l[..i]),
            _ if l.ends_with('s') && l.contains("  ") => format!(
                "{}Ns\n",
                l.trim_end_matches(|c: char| c == 's' || c == '.' || c.is_ascii_digit())
            ),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_eq!(
        masked,
        "== passes\n    master: echo 'a b'\nok   passes (Ns)\n\
== fails\n    before\n    FAIL: the thing is broken\n    | line 1\n    | line 2\nFAIL fails (Ns)\n\
== heal: rerunning every role before the next check\n    master: still failing: rerunning the master role on master did not converge\n\
\x20   slave: still failing: rerunning the slave role on slave did not converge\n\
\x20   backup: still failing: rerunning the backup role on backup did not converge\n\
== panics\n    FAIL: the check panicked\n    | boom\nFAIL panics (Ns)\n\
\n== check timings\npasses       ok      Ns\nfails        FAIL    Ns\npanics       FAIL    Ns\n\n1 passed, 2 failed\n"
    );
}

#[test]
fn timings_are_aligned_like_printf() {
    let mut out = Vec::new();
    let outcomes = [
        Outcome {
            name: "restore",
            ok: true,
            secs: 34.21,
        },
        Outcome {
            name: "idempotence",
            ok: false,
            secs: 123.45,
        },
    ];
    print_summary(
        &mut out,
        &outcomes,
        Some((
            "lab timings (last provision/lab up)".into(),
            "total 1.0s".into(),
        )),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\n== check timings\nrestore      ok     34.2s\nidempotence  FAIL  123.5s\n\n\
== lab timings (last provision/lab up)\ntotal 1.0s\n\n1 passed, 1 failed\n"
    );
}

#[test]
fn select_keeps_the_order_given_and_names_unknown_checks() {
    let names = |v: Vec<Check>| v.iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(
        names(select(CHECKS, &[]).ok().unwrap()),
        ["passes", "fails", "panics"]
    );
    assert_eq!(
        names(
            select(CHECKS, &["fails".into(), "passes".into()])
                .ok()
                .unwrap()
        ),
        ["fails", "passes"]
    );
    assert_eq!(
        select(CHECKS, &["nope".into(), "passes".into(), "x".into()])
            .err()
            .unwrap(),
        ["nope", "x"]
    );
}

#[test]
fn the_registry_lists_the_checks_in_order() {
    let names: Vec<&str> = crate::checks::ALL.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "network",
            "replication",
            "standby",
            "backup",
            "backup-idle",
            "restore",
            "drill",
            "incremental",
            "idempotence",
            "drift",
            "status",
            "security",
            "bad-config",
            "tls",
            "forced-command",
            "secrets-hidden",
            "monitoring",
            "fault-standby-down",
            "fault-slot-lost",
            "fault-partition",
            "fault-primary-kill",
            "fault-primary-poweroff",
            "fault-backup-down",
            "fault-reboot",
            "fault-interrupted",
            "fault-concurrent",
            "switchover",
            "pitr-timeline",
            "failover",
            "zero-loss",
            "promotion-soak",
            "disaster",
            "standbys",
        ]
    );
}

#[test]
fn cluster_view_from_the_config() {
    let c = cluster();
    assert_eq!(c.primary().name, "master");
    assert_eq!(
        c.standbys()
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["slave"]
    );
    assert_eq!(c.backup().address.to_string(), "192.168.11.103");
    assert_eq!(c.nodes().len(), 3);
    assert!(c.node("slave").is_some() && c.node("nope").is_none());
    assert_eq!(c.subnet(), ("192.168.11.0".parse().unwrap(), 24));
    assert_eq!(c.target().name(), "echo");
}
