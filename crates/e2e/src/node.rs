//! A node handle, as `PostgreSQL::Test::Cluster` is for PostgreSQL's recovery tests: run commands,
//! query PostgreSQL on the local socket, poll until a query returns what is expected, stop and
//! start the service. Where the node is belongs to its [`Target`].

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pgnode_core::config::Role;

use crate::target::{Command, Output, Target};
use crate::text::tail;
use crate::wait::{pending, wait_for};
use crate::{fail, Failure, Result};

/// One node of the cluster.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub address: Ipv4Addr,
    target: Arc<dyn Target>,
    major: Arc<OnceLock<u16>>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Node({} {} {} on {})",
            self.name,
            self.role,
            self.address,
            self.target.name()
        )
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The argv of psql as postgres on the local socket, stopping at the first error; the query is
/// one argument (`-c`), so psql prints errors exactly as it does for a typed statement.
pub fn psql_argv<'a>(db: &'a str, query: &'a str) -> Vec<&'a str> {
    let argv = [
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
    ];
    let mut v = argv.to_vec();
    v.extend_from_slice(&["-d", db, "-c", query]);
    v
}

impl Node {
    /// A handle for `name` on `target`.
    pub fn new(name: &str, role: Role, address: Ipv4Addr, target: Arc<dyn Target>) -> Node {
        Node {
            name: name.to_string(),
            role,
            address,
            target,
            major: Arc::new(OnceLock::new()),
        }
    }

    /// Runs `cmd` (any exit status). Err: it could not run or timed out.
    pub fn exec(&self, cmd: &Command) -> Result<Output> {
        self.target.exec(&self.name, cmd).map_err(|e| {
            Failure::new(
                format!("on {}: could not run `{}`", self.name, cmd.display()),
                e.to_string(),
            )
        })
    }

    /// Runs argv as root (any exit status). Err: it could not run or timed out.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        self.exec(&Command::new(argv))
    }

    /// Runs argv as root with `stdin` fed to it.
    pub fn run_stdin(&self, argv: &[&str], stdin: &[u8]) -> Result<Output> {
        self.exec(&Command::new(argv).stdin(stdin))
    }

    /// Runs argv as `user` (`runuser -u USER -- argv`).
    pub fn run_as(&self, user: &str, argv: &[&str]) -> Result<Output> {
        let mut full = vec!["runuser", "-u", user, "--"];
        full.extend_from_slice(argv);
        self.run(&full)
    }

    /// Runs argv and returns its stdout. Err: could not run, or exited non-zero (the failure
    /// names the command and carries the exit status and the output's tail).
    pub fn ok(&self, argv: &[&str]) -> Result<String> {
        let out = self.run(argv)?;
        check_ok(&self.name, &Command::new(argv), out)
    }

    /// psql as postgres on the local socket, `query` as one argument: the output, trimmed.
    /// Err: psql failed (the failure carries its output).
    pub fn sql(&self, db: &str, query: &str) -> Result<String> {
        let out = self.try_sql(db, query)?;
        if !out.success() {
            return fail(
                format!("psql on {} failed: {query}", self.name),
                out.combined().trim_end(),
            );
        }
        Ok(out.stdout.trim().to_string())
    }

    /// Like [`Node::sql`], whatever psql's exit status: for statements that must be refused.
    pub fn try_sql(&self, db: &str, query: &str) -> Result<Output> {
        self.run(&psql_argv(db, query))
    }

    /// Polls `query` until its output is exactly `expected`. Err on timeout, with the last output.
    pub fn poll_until(
        &self,
        db: &str,
        query: &str,
        expected: &str,
        timeout: Duration,
    ) -> Result<()> {
        let what = format!("{}: `{query}` to return {expected:?}", self.name);
        wait_for(&what, timeout, || {
            let out = self.try_sql(db, query)?;
            if out.success() && out.stdout.trim() == expected {
                Ok(Some(()))
            } else {
                pending(out.combined().trim_end().to_string())
            }
        })
    }

    /// `pgnode ARGS --config CONFIG` with the target's config path (any exit status).
    pub fn pgnode(&self, args: &[&str]) -> Result<Output> {
        let layout = self.target.layout();
        let mut argv = vec!["pgnode"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--config", &layout.config]);
        self.run(&argv)
    }

    /// Provisions the node the way Vagrant (or Ansible) does: `guest.sh ROLE` (any exit status).
    pub fn provision(&self) -> Result<Output> {
        let mut argv = self.target.layout().provision;
        argv.push(self.role.as_str().to_string());
        // Vagrant uploads the binary to /tmp/pgnode before every provisioning run, and a reboot
        // empties /tmp: after a drill rebooted this node, run the binary the last run installed.
        if argv.iter().any(|a| a == "/vagrant/provision/guest.sh")
            && !self.run(&["test", "-e", "/tmp/pgnode"])?.success()
        {
            argv.push("/usr/local/bin/pgnode".into());
        }
        self.exec(&Command::new(&argv))
    }

    /// `barman ARGS` as user barman (any exit status).
    pub fn barman(&self, args: &[&str]) -> Result<Output> {
        let mut argv = vec!["barman"];
        argv.extend_from_slice(args);
        self.run_as("barman", &argv)
    }

    /// A file's content. Err: it cannot be read.
    pub fn file(&self, path: &str) -> Result<String> {
        self.ok(&["cat", "--", path])
    }

    /// The PostgreSQL major installed (the newest under /etc/postgresql), cached.
    pub fn major(&self) -> Result<u16> {
        if let Some(m) = self.major.get() {
            return Ok(*m);
        }
        let out = self.ok(&["ls", "/etc/postgresql"])?;
        let Some(m) = out
            .lines()
            .filter_map(|l| l.trim().parse::<u16>().ok())
            .max()
        else {
            return fail(
                format!("{}: no PostgreSQL cluster under /etc/postgresql", self.name),
                out,
            );
        };
        Ok(*self.major.get_or_init(|| m))
    }

    /// The systemd unit of the node's cluster, `postgresql@MAJOR-main`.
    pub fn service(&self) -> Result<String> {
        Ok(format!("postgresql@{}-main", self.major()?))
    }

    /// `systemctl stop postgresql@MAJOR-main`. Err: systemctl failed.
    pub fn service_stop(&self) -> Result<()> {
        self.ok(&["systemctl", "stop", &self.service()?]).map(drop)
    }

    /// `systemctl start postgresql@MAJOR-main`. Err: systemctl failed.
    pub fn service_start(&self) -> Result<()> {
        self.ok(&["systemctl", "start", &self.service()?]).map(drop)
    }

    /// SIGKILL to the postmaster (the PID in postmaster.pid): a crash, not a shutdown.
    pub fn kill9_postmaster(&self) -> Result<()> {
        let pidfile = format!("/var/lib/postgresql/{}/main/postmaster.pid", self.major()?);
        let content = self.file(&pidfile)?;
        let pid = content.lines().next().unwrap_or_default().trim();
        if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
            return fail(format!("{}: no PID in {pidfile}", self.name), content);
        }
        self.ok(&["kill", "-KILL", pid]).map(drop)
    }
}

/// stdout of a command that exited 0, or a failure naming the command, status and output tail.
pub fn check_ok(node: &str, cmd: &Command, out: Output) -> Result<String> {
    if out.success() {
        return Ok(out.stdout);
    }
    let status = out
        .code
        .map_or("was killed".to_string(), |c| format!("exited {c}"));
    fail(
        format!("on {node}: `{}` {status}", cmd.display()),
        tail(out.combined().trim_end(), 30),
    )
}
