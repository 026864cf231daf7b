//! The runner: named checks in order against one cluster, with the report format of the bash
//! suite it replaced (`== NAME`, evidence lines, `ok   NAME (N.Ns)` / `FAIL NAME (N.Ns)`, the
//! check timings, then `N passed, N failed`).

use std::cell::RefCell;
use std::fmt::Display;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::cluster::Cluster;
use crate::{Failure, Result};

/// A registered check: its name and the function that runs it.
#[derive(Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> Result<()>,
}

/// One registration line: `check!("name", name::run),`.
#[macro_export]
macro_rules! check {
    ($name:literal, $run:path) => {
        $crate::runner::Check {
            name: $name,
            run: $run,
        }
    };
}

/// What a check gets: the cluster, and a place for its evidence lines.
pub struct Ctx<'a> {
    pub cluster: &'a Cluster,
    out: RefCell<&'a mut dyn Write>,
}

impl<'a> Ctx<'a> {
    /// A context writing evidence to `out`.
    pub fn new(cluster: &'a Cluster, out: &'a mut dyn Write) -> Ctx<'a> {
        Ctx {
            cluster,
            out: RefCell::new(out),
        }
    }

    /// One evidence line (each line of it indented by four spaces), printed at once.
    pub fn note(&self, line: impl Display) {
        let text = line.to_string();
        let mut out = self.out.borrow_mut();
        for l in text.split('\n') {
            let _ = writeln!(out, "    {l}");
        }
        let _ = out.flush();
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub name: &'static str,
    pub ok: bool,
    pub secs: f64,
}

/// Prints a failure: `    FAIL: message` then each evidence line as `    | line`.
pub fn print_failure(out: &mut dyn Write, f: &Failure) -> io::Result<()> {
    writeln!(out, "    FAIL: {}", f.message)?;
    if !f.evidence.is_empty() {
        for l in f.evidence.split('\n') {
            writeln!(out, "    | {l}")?;
        }
    }
    Ok(())
}

/// Runs one check, catching a panic as a failure, and prints its header and result line.
pub fn run_one(cluster: &Cluster, check: &Check, out: &mut dyn Write) -> io::Result<Outcome> {
    writeln!(out, "== {}", check.name)?;
    out.flush()?;
    let start = Instant::now();
    let result = {
        let mut cx = Ctx::new(cluster, &mut *out);
        catch_unwind(AssertUnwindSafe(|| (check.run)(&mut cx))).unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Failure::new("the check panicked", why))
        })
    };
    let secs = start.elapsed().as_secs_f64();
    if let Err(f) = &result {
        print_failure(out, f)?;
    }
    let ok = result.is_ok();
    writeln!(
        out,
        "{} {} ({secs:.1}s)",
        if ok { "ok  " } else { "FAIL" },
        check.name
    )?;
    out.flush()?;
    Ok(Outcome {
        name: check.name,
        ok,
        secs,
    })
}

/// The report's tail: check timings, an optional target block, and `N passed, N failed`.
pub fn print_summary(
    out: &mut dyn Write,
    outcomes: &[Outcome],
    extra: Option<(String, String)>,
) -> io::Result<()> {
    writeln!(out, "\n== check timings")?;
    for o in outcomes {
        let secs = format!("{:.1}", o.secs);
        writeln!(
            out,
            "{:<12} {:<4} {secs:>6}s",
            o.name,
            if o.ok { "ok" } else { "FAIL" }
        )?;
    }
    if let Some((title, text)) = extra {
        writeln!(out, "\n== {title}\n{text}")?;
    }
    let passed = outcomes.iter().filter(|o| o.ok).count();
    writeln!(out, "\n{passed} passed, {} failed", outcomes.len() - passed)?;
    out.flush()
}

/// Runs `checks` in order and prints the whole report. Returns true when every check passed.
pub fn run(cluster: &Cluster, checks: &[Check], out: &mut dyn Write) -> io::Result<bool> {
    let mut outcomes = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let o = run_one(cluster, c, out)?;
        let heal = !o.ok && i + 1 < checks.len();
        outcomes.push(o);
        if heal {
            heal_after_failure(cluster, out)?;
        }
    }
    print_summary(out, &outcomes, cluster.target().timings())?;
    Ok(outcomes.iter().all(|o| o.ok))
}

/// After a failed check, reruns every role (primary, standbys, backup: the provisioning order)
/// so that the next check starts from a converged cluster instead of failing on what this one
/// left broken. The failure stays reported; the heal only stops it from cascading.
fn heal_after_failure(cluster: &Cluster, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "== heal: rerunning every role before the next check")?;
    let mut nodes = vec![cluster.primary()];
    nodes.extend(cluster.standbys());
    nodes.push(cluster.backup());
    for n in nodes {
        let line = match crate::faults::rerun_ok(n) {
            Ok(said) => said
                .lines()
                .find(|l| l.contains("recap:"))
                .unwrap_or("converged")
                .trim()
                .to_string(),
            Err(f) => format!("still failing: {}", f.message),
        };
        writeln!(out, "    {n}: {line}")?;
    }
    out.flush()
}

/// The checks named in `names` (all when empty), in the order given. Err: the unknown names.
pub fn select(all: &[Check], names: &[String]) -> std::result::Result<Vec<Check>, Vec<String>> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !all.iter().any(|c| c.name == n.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(names
        .iter()
        .filter_map(|n| all.iter().find(|c| c.name == n.as_str()).copied())
        .collect())
}

#[cfg(test)]
mod tests;
