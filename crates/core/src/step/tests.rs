use super::*;
use std::cell::Cell;

#[test]
fn applies_only_what_needs_it_and_rechecks() {
    let state = Cell::new(false);
    let applied = Cell::new(0);
    let mut seen = Vec::new();
    let mut r = Runner::new(false, |e: &Entry| seen.push(e.step.clone()));
    let ok = r.run(vec![
        Step::change(
            "already fine",
            || Ok(Check::Ok),
            || panic!("must not apply"),
        ),
        Step::change(
            "needs it",
            || {
                Ok(if state.get() {
                    Check::Ok
                } else {
                    Check::Needs("off".into())
                })
            },
            || {
                applied.set(applied.get() + 1);
                state.set(true);
                Ok(())
            },
        ),
    ]);
    assert!(ok);
    assert_eq!(
        (r.report.ok(), r.report.changed(), r.report.failed()),
        (1, 1, 0)
    );
    assert_eq!(applied.get(), 1);
    assert!(r
        .recap("master")
        .starts_with("recap: role=master ok=1 changed=1 failed=0 elapsed="));
    drop(r);
    assert_eq!(seen, ["already fine", "needs it"]);
}

#[test]
fn stops_at_first_failure_and_catches_non_convergence() {
    let mut r = Runner::new(false, |_: &Entry| {});
    let ok = r.run(vec![
        Step::change("lies", || Ok(Check::Needs("x".into())), || Ok(())),
        Step::change("never reached", || panic!("ran after failure"), || Ok(())),
    ]);
    assert!(!ok);
    assert_eq!(r.report.failed(), 1);
    match &r.report.entries[0].outcome {
        Outcome::Failed(m) => assert!(m.contains("did not converge"), "{m}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn dry_run_never_applies_and_marks_dependent_checks_unknown() {
    let mut r = Runner::new(true, |_: &Entry| {});
    r.run(vec![
        Step::change(
            "install",
            || Ok(Check::Needs("missing".into())),
            || panic!("applied in dry run"),
        ),
        Step::change(
            "depends",
            || Err(Error::Refused("no psql yet".into())),
            || panic!("applied"),
        ),
        Step::verify(
            "wait",
            || Ok(Check::Needs("not up".into())),
            || panic!("waited in dry run"),
        ),
    ]);
    let o: Vec<_> = r.report.entries.iter().map(|e| e.outcome.clone()).collect();
    assert!(matches!(o[0], Outcome::WouldChange(_)));
    assert!(matches!(o[1], Outcome::Unknown(_)));
    assert!(matches!(o[2], Outcome::Unknown(_)));
    assert!(r
        .recap("slave")
        .contains("changed=1 failed=0 unknown=2 dry_run=true"));
}

#[test]
fn a_settling_step_is_rechecked_until_the_change_takes_effect() {
    let polls = Cell::new(0);
    let check = || {
        polls.set(polls.get() + 1);
        // Not yet on the first re-checks, like sshd re-executing after a reload.
        Ok(if polls.get() > 4 {
            Check::Ok
        } else {
            Check::Needs("no key".into())
        })
    };
    let mut r = Runner::new(false, |_: &Entry| {});
    assert!(r.run(vec![
        Step::change("reload", check, || Ok(())).settles(Duration::from_secs(10))
    ]));
    assert_eq!(r.report.changed(), 1);
    let mut r = Runner::new(false, |_: &Entry| {});
    let never = Step::change("never", || Ok(Check::Needs("no key".into())), || Ok(()))
        .settles(Duration::from_millis(600));
    assert!(!r.run(vec![never]));
    match &r.report.entries[0].outcome {
        Outcome::Failed(m) => assert!(m.contains("no key (still, 0.6s after"), "{m}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn verify_that_waited_is_not_a_change() {
    let up = Cell::new(false);
    let mut r = Runner::new(false, |_: &Entry| {});
    r.run(vec![Step::verify(
        "master answers",
        || {
            Ok(if up.get() {
                Check::Ok
            } else {
                Check::Needs("down".into())
            })
        },
        || {
            up.set(true);
            Ok(())
        },
    )]);
    assert_eq!((r.report.ok(), r.report.changed()), (1, 0));
}

#[test]
fn first_checks_share_probes_until_a_step_changes_something() {
    use crate::exec::Cmd;
    let dir = std::env::temp_dir().join(format!("pgnode-runner-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let count = dir.join("count");
    // A probe that counts its real runs: the state a step's apply changes.
    let probe = Cmd::new("sh").args(["-c", &format!("echo x >>{0}; wc -l <{0}", count.display())]);
    let seen = std::cell::RefCell::new(Vec::new());
    let read = || -> Result<Check> {
        let n = probe.probe_shared()?.stdout.trim().to_string();
        seen.borrow_mut().push(n);
        Ok(Check::Ok)
    };
    let changed = Cell::new(false);
    let mut r = Runner::new(false, |_: &Entry| {});
    let ok = r.run(vec![
        Step::change("reads", read, || Ok(())),
        Step::change("reads again", read, || Ok(())),
        Step::change(
            "changes",
            || {
                Ok(if changed.get() {
                    Check::Ok
                } else {
                    Check::Needs("x".into())
                })
            },
            || {
                changed.set(true);
                Ok(())
            },
        ),
        Step::change("reads after the change", read, || Ok(())),
        Step::change("reads once more", read, || Ok(())),
    ]);
    assert!(ok);
    // One real run for the first two steps, a fresh one after the change, shared again after.
    assert_eq!(*seen.borrow(), ["1", "1", "2", "2"]);
    // After the run, sharing is off.
    assert_eq!(probe.probe_shared().unwrap().stdout.trim(), "3");
    assert_eq!(probe.probe_shared().unwrap().stdout.trim(), "4");
    let _ = std::fs::remove_dir_all(&dir);
}
