//! Load for the checks that need one, bounded in time so it always stops by itself: pgbench on
//! the primary's local socket, and the acknowledged-commit [`Ledger`].

use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::target::{Command, Output};
use crate::text::tail;
use crate::{ensure, fail, Failure, Node, Result};

pub use crate::ledger::{Ack, Ledger, LedgerReport};

/// pgbench running on a node for a bounded time.
pub struct Pgbench {
    node: String,
    handle: JoinHandle<Result<Output>>,
}

/// What pgbench reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PgbenchReport {
    pub transactions: u64,
    pub failed: u64,
    pub tps: f64,
    pub output: String,
}

impl Pgbench {
    /// Initializes pgbench's tables in `postgres` if they are missing (`pgbench -i`), then starts
    /// `pgbench -T seconds -c clients` as postgres on the local socket in the background.
    /// Err: the initialization failed.
    pub fn start(node: &Node, seconds: u32, clients: u32) -> Result<Pgbench> {
        let bin = format!("/usr/lib/postgresql/{}/bin/pgbench", node.major()?);
        let have = node.sql(
            "postgres",
            "select to_regclass('pgbench_accounts') is not null",
        )?;
        if have != "t" {
            let out = node.run_as("postgres", &[&bin, "-i", "-q", "postgres"])?;
            ensure(
                out.success(),
                format!("pgbench -i on {node} failed"),
                tail(&out.combined(), 20),
            )?;
        }
        let argv = [
            "runuser",
            "-u",
            "postgres",
            "--",
            &bin,
            "-n",
            "-T",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "postgres",
        ]
        .map(String::from);
        let cmd = Command::new(&argv).timeout(Duration::from_secs(u64::from(seconds) + 120));
        let worker = node.clone();
        Ok(Pgbench {
            node: node.name.clone(),
            handle: thread::spawn(move || worker.exec(&cmd)),
        })
    }

    /// Waits for pgbench to end and returns its figures. Err: it failed or printed no figures.
    pub fn finish(self) -> Result<PgbenchReport> {
        let out = self
            .handle
            .join()
            .map_err(|_| Failure::new("the pgbench thread panicked", ""))??;
        let text = out.combined();
        ensure(
            out.success(),
            format!("pgbench on {} failed", self.node),
            tail(&text, 20),
        )?;
        match parse_pgbench(&text) {
            Some(r) => Ok(r),
            None => fail(
                format!("pgbench on {} printed no transaction count", self.node),
                tail(&text, 20),
            ),
        }
    }
}

/// Reads `number of transactions actually processed: N`, `number of failed transactions: N`
/// (PostgreSQL 15 and later) and `tps = X`.
pub fn parse_pgbench(text: &str) -> Option<PgbenchReport> {
    let after = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
    };
    let transactions = after("number of transactions actually processed:")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some(PgbenchReport {
        transactions,
        failed: after("number of failed transactions:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        tps: after("tps =").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        output: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_figures() {
        let out = "pgbench (15.14 (Debian 15.14-0+deb12u1))\ntransaction type: <builtin: TPC-B (sort of)>\n\
scaling factor: 1\nnumber of clients: 2\nduration: 10 s\nnumber of transactions actually processed: 5123\n\
number of failed transactions: 0 (0.000%)\nlatency average = 3.9 ms\ntps = 512.345678 (without initial connection time)\n";
        let r = parse_pgbench(out).unwrap();
        assert_eq!((r.transactions, r.failed, r.tps), (5123, 0, 512.345678));
        assert_eq!(parse_pgbench("pgbench: error: connection failed"), None);
    }
}
