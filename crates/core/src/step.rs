//! Steps and the runner. A step is a description, a side-effect-free check ("ok" or "needs
//! change: why") and an apply. The runner checks, applies only what needs it, re-checks that the
//! apply converged, records ok / changed / failed and stops at the first failure. `--dry-run`
//! is the same runner with apply skipped: never a second implementation.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::{self, FileSpec, FileState};
use crate::Ctx;

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ok,
    Needs(String),
}

/// Whether a step changes the node or only verifies (and may wait for) a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Change,
    Verify,
}

type CheckFn<'a> = Box<dyn Fn() -> Result<Check> + 'a>;
type ApplyFn<'a> = Box<dyn Fn() -> Result<()> + 'a>;
type PreviewFn<'a> = Box<dyn Fn() -> Result<String> + 'a>;

/// One step of a role.
pub struct Step<'a> {
    pub name: String,
    pub kind: Kind,
    check: CheckFn<'a>,
    apply: ApplyFn<'a>,
    preview: Option<PreviewFn<'a>>,
    /// How long the re-check after apply may wait for the change to take effect.
    settle: Option<Duration>,
}

impl<'a> Step<'a> {
    /// A step that changes the node when its check says so.
    pub fn change(
        name: impl Into<String>,
        check: impl Fn() -> Result<Check> + 'a,
        apply: impl Fn() -> Result<()> + 'a,
    ) -> Self {
        Step {
            name: name.into(),
            kind: Kind::Change,
            check: Box::new(check),
            apply: Box::new(apply),
            preview: None,
            settle: None,
        }
    }

    /// A step that verifies a condition; its "apply" waits (bounded) for the condition or fails.
    /// It never counts as a change.
    pub fn verify(
        name: impl Into<String>,
        check: impl Fn() -> Result<Check> + 'a,
        wait: impl Fn() -> Result<()> + 'a,
    ) -> Self {
        Step {
            name: name.into(),
            kind: Kind::Verify,
            check: Box::new(check),
            apply: Box::new(wait),
            preview: None,
            settle: None,
        }
    }

    /// The apply only asks a service to act (a reload, a start) and the service takes effect
    /// asynchronously: the re-check after apply is polled for up to `timeout` instead of being
    /// run once. Without this a verify right after `systemctl reload ssh` races sshd's
    /// re-exec (OpenSSH 10 on Debian 13 is not listening for a moment) and fails a converge
    /// that a rerun would pass.
    pub fn settles(mut self, timeout: Duration) -> Self {
        self.settle = Some(timeout);
        self
    }

    /// A verify step built from one probe (`Ok(Ok(()))` = condition holds, `Ok(Err(why))` = not
    /// yet): its check runs the probe once, its wait polls it every `every` for at most `timeout`.
    pub fn poll(
        name: impl Into<String>,
        what: &'a str,
        timeout: std::time::Duration,
        every: std::time::Duration,
        probe: impl Fn() -> Result<std::result::Result<(), String>> + 'a,
    ) -> Self {
        let probe = std::rc::Rc::new(probe);
        let p2 = probe.clone();
        Step::verify(
            name,
            move || Ok(probe()?.map_or_else(Check::Needs, |_| Check::Ok)),
            move || crate::wait::until(what, timeout, every, || p2()),
        )
    }

    /// A step converging one file; its dry-run preview is a diff (never for secret files).
    pub fn file(ctx: &'a Ctx, spec: FileSpec) -> Self {
        let spec = std::rc::Rc::new(spec);
        let (s1, s2, s3) = (spec.clone(), spec.clone(), spec.clone());
        let mut step = Step::change(
            format!("file {}", spec.path.display()),
            move || {
                Ok(match files::inspect(&ctx.root, &s1, true)? {
                    FileState::Same => Check::Ok,
                    FileState::Missing => Check::Needs("missing".into()),
                    FileState::Differs { what, .. } => {
                        Check::Needs(format!("differs in {}", what.join(", ")))
                    }
                })
            },
            move || files::write(&ctx.root, &s2, true).map(|_| ()),
        );
        step.preview = Some(Box::new(move || {
            let old = match files::inspect(&ctx.root, &s3, false)? {
                FileState::Differs { old, .. } => old,
                _ => Vec::new(),
            };
            Ok(if s3.secret {
                "  (secret content not shown)\n".to_string()
            } else {
                crate::diff::line_diff(
                    &String::from_utf8_lossy(&old),
                    &String::from_utf8_lossy(&s3.content),
                )
            })
        }));
        step
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A verify step that had to wait for its condition.
    Waited(String),
    Changed(String),
    /// Dry run: would change; the detail holds why and the diff.
    WouldChange(String),
    /// Dry run: cannot be checked before earlier changes are applied.
    Unknown(String),
    Failed(String),
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub step: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
}

/// The report of a run, like Ansible's recap.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub entries: Vec<Entry>,
    pub seconds: f64,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.entries.iter().filter(|e| f(&e.outcome)).count()
    }

    /// Steps that changed (or would change, in a dry run).
    pub fn changed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Changed(_) | Outcome::WouldChange(_)))
    }

    /// Steps that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Steps that were fine as they were.
    pub fn ok(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Ok | Outcome::Waited(_)))
    }

    /// Steps a dry run could not check.
    pub fn unknown(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Unknown(_)))
    }
}

/// The test hook of the interrupted-provisioning drill: `PGNODE_TEST_KILL_AFTER_STEPS=N` makes
/// the run kill itself with SIGKILL right after its N-th step line, i.e. exactly at a step
/// boundary (a killer outside the process races with the next steps, which often take
/// milliseconds). Unset in normal use; it can only stop a run, never change what a step does.
pub const KILL_AFTER_STEPS: &str = "PGNODE_TEST_KILL_AFTER_STEPS";

/// Runs steps in order, printing each entry through `on_entry` as it completes.
pub struct Runner<'p> {
    pub dry_run: bool,
    pub report: Report,
    started: Instant,
    on_entry: Box<dyn FnMut(&Entry) + 'p>,
    kill_after: Option<usize>,
}

impl<'p> Runner<'p> {
    /// A runner; `on_entry` sees each entry as soon as it is recorded.
    pub fn new(dry_run: bool, on_entry: impl FnMut(&Entry) + 'p) -> Self {
        Runner {
            dry_run,
            report: Report::default(),
            started: Instant::now(),
            on_entry: Box::new(on_entry),
            kill_after: std::env::var(KILL_AFTER_STEPS)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }
    }

    /// Runs `steps`; returns false (and stops) at the first failure.
    pub fn run(&mut self, steps: Vec<Step<'_>>) -> bool {
        let converged = self.run_steps(steps);
        crate::exec::forget_shared();
        converged
    }

    fn run_steps(&mut self, steps: Vec<Step<'_>>) -> bool {
        for step in steps {
            let t = Instant::now();
            let outcome = self.one(&step);
            let failed = matches!(outcome, Outcome::Failed(_));
            let entry = Entry {
                step: step.name,
                outcome,
                seconds: secs(t.elapsed()),
            };
            (self.on_entry)(&entry);
            self.report.entries.push(entry);
            if self.kill_after == Some(self.report.entries.len()) {
                kill_self(self.report.entries.len());
            }
            self.report.seconds = secs(self.started.elapsed());
            if failed {
                return false;
            }
        }
        true
    }

    fn one(&self, step: &Step<'_>) -> Outcome {
        let earlier_changes = self.report.changed() > 0 || self.report.unknown() > 0;
        // First checks share expensive probes (exec::probe_shared) until a step changes
        // something: on a converged node one `barman check` answers every step that reads it.
        crate::exec::share_probes();
        let first = (step.check)();
        if !matches!(first, Ok(Check::Ok)) {
            crate::exec::forget_shared();
        }
        let why = match first {
            Ok(Check::Ok) => return Outcome::Ok,
            Ok(Check::Needs(why)) => why,
            // In a dry run a check may depend on a change not yet applied (a package, a file).
            Err(e) if self.dry_run && earlier_changes => return Outcome::Unknown(chain(&e)),
            Err(e) => return Outcome::Failed(chain(&e)),
        };
        if self.dry_run {
            let preview = step
                .preview
                .as_ref()
                .map(|p| p().unwrap_or_else(|e| chain(&e)))
                .unwrap_or_default();
            return match step.kind {
                Kind::Verify => Outcome::Unknown(format!("would wait: {why}")),
                Kind::Change => Outcome::WouldChange(if preview.is_empty() {
                    why
                } else {
                    format!("{why}\n{preview}")
                }),
            };
        }
        if let Err(e) = (step.apply)() {
            return Outcome::Failed(chain(&e));
        }
        match recheck(step) {
            Ok(Check::Ok) if step.kind == Kind::Verify => Outcome::Waited(why),
            Ok(Check::Ok) => Outcome::Changed(why),
            Ok(Check::Needs(still)) => Outcome::Failed(chain(&Error::NotConverged(still))),
            Err(e) => Outcome::Failed(chain(&e)),
        }
    }

    /// The final recap line, parsed by the lab and the Ansible playbook.
    pub fn recap(&self, role: &str) -> String {
        let r = &self.report;
        let mut s = format!(
            "recap: role={role} ok={} changed={} failed={}",
            r.ok(),
            r.changed(),
            r.failed()
        );
        if self.dry_run {
            s.push_str(&format!(" unknown={} dry_run=true", r.unknown()));
        }
        s.push_str(&format!(" elapsed={:.1}s", secs(self.started.elapsed())));
        s
    }
}

/// SIGKILL to this process (the test hook): no destructor, no flush after this line, as when
/// a provisioning run is killed from outside.
fn kill_self(n: usize) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("pgnode: {KILL_AFTER_STEPS}={n}: killed at this step boundary (test hook)");
    let pid = std::process::id().to_string();
    let _ = crate::exec::Cmd::new("kill").args(["-KILL", &pid]).run();
    // Not reached: `kill` ends this process while it waits for it.
    std::process::abort();
}

/// The check after apply: once, or polled (bounded) while it says "not yet" for a step that
/// settles. An error is final at once: waiting does not fix it.
fn recheck(step: &Step<'_>) -> Result<Check> {
    let start = Instant::now();
    loop {
        let c = (step.check)()?;
        match (c, step.settle) {
            (Check::Needs(_), Some(t)) if start.elapsed() < t => {
                std::thread::sleep(Duration::from_millis(250));
            }
            (Check::Needs(why), Some(t)) => {
                return Ok(Check::Needs(format!(
                    "{why} (still, {:.1}s after the change)",
                    t.as_secs_f64()
                )))
            }
            (c, _) => return Ok(c),
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// An error and each of its causes, once each, `caused by:` between them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(&format!("\n  caused by: {text}"));
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
