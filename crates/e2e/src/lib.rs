//! pgnode's end-to-end suite as a library: node handles over a [`Target`] (the lab, Vagrant VMs or
//! SSH hosts), a [`Cluster`] built from the config through pgnode-core's own parser, bounded waits,
//! load helpers and the runner that prints today's report format. Each check is one file under
//! `checks/`, registered by one line in `checks/mod.rs`.
//!
//! The model is PostgreSQL's own recovery tests (`src/test/recovery/t/*.pl` over
//! `PostgreSQL::Test::Cluster`): a node object with `sql`, `poll_until`, `service_stop`,
//! `service_start`, and one small file per scenario. No shell quoting anywhere: argv elements are
//! passed as they are and SQL travels as one argument.

use std::fmt;

pub mod archive;
pub mod checks;
pub mod cluster;
pub mod faults;
pub mod inventory;
pub mod ledger;
pub mod load;
pub mod node;
pub mod process;
pub mod prom;
pub mod runner;
pub mod target;
pub mod text;
pub mod wait;

pub use cluster::Cluster;
pub use load::{Ledger, LedgerReport, Pgbench, PgbenchReport};
pub use node::Node;
pub use runner::{Check, Ctx};
pub use target::{Command, Output, Target};
pub use wait::{pending, wait_for};

/// `name` made unique to this run of the suite (`switched.e2e.json` ->
/// `switched-PID.e2e.json`): the configs checks write land in the checkout every guest mounts at
/// /vagrant, and CI runs several labs side by side from one checkout, so a fixed name let one
/// lab's switchover config overwrite (or remove) another's.
pub fn per_run(name: &str) -> String {
    let (stem, rest) = name.split_once('.').unwrap_or((name, ""));
    let dot = if rest.is_empty() { "" } else { "." };
    format!("{stem}-{}{dot}{rest}", std::process::id())
}

/// What a check returns: `Err` ends the check with a message and its evidence.
pub type Result<T> = std::result::Result<T, Failure>;

/// Why a check failed, with the evidence (command output, query result) that shows it.
/// The runner prints it as `    FAIL: message` followed by `    | evidence` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub evidence: String,
}

impl Failure {
    /// A failure with its evidence.
    pub fn new(message: impl Into<String>, evidence: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            evidence: evidence.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.evidence.is_empty() {
            write!(f, "\n{}", self.evidence)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Ends a check: `return fail("what is wrong", evidence)`.
pub fn fail<T>(message: impl Into<String>, evidence: impl Into<String>) -> Result<T> {
    Err(Failure::new(message, evidence))
}

/// `fail(message, evidence)` unless `condition` holds.
pub fn ensure(
    condition: bool,
    message: impl Into<String>,
    evidence: impl Into<String>,
) -> Result<()> {
    if condition {
        Ok(())
    } else {
        fail(message, evidence)
    }
}

/// A short random token (12 hex digits) for rows a check writes, so reruns never collide.
pub fn token() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    if hex.len() == 12 {
        return hex;
    }
    // Without /proc (never in the lab): the clock's nanoseconds are unique enough for one run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:012x}", nanos & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod per_run_tests {
    #[test]
    fn the_pid_goes_before_the_extensions_so_gitignore_patterns_still_match() {
        let pid = std::process::id();
        assert_eq!(
            super::per_run("switched.e2e.json"),
            format!("switched-{pid}.e2e.json")
        );
        assert_eq!(
            super::per_run("e2e-fault-slot-lost.json"),
            format!("e2e-fault-slot-lost-{pid}.json")
        );
    }
}
