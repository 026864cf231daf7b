//! Targets: where a node's commands run. One job, running a command on a node and returning its
//! output and status. The lab enters a systemd-nspawn guest (`provision/lab exec`), Vagrant goes
//! through `vagrant ssh NODE -c`, plain hosts through `ssh` (see [`crate::inventory`]). Checks never
//! know which one they run on: they hold [`crate::Node`] handles.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{run_bounded, Local};
use crate::text::quote_argv;

/// A command for a node: argv passed as is (never through a shell on the way), optional stdin,
/// and a time bound after which it is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Command {
    /// `argv` with no stdin (/dev/null) and the default bound ([`default_timeout`]).
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Command {
        Command {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            stdin: None,
            timeout: default_timeout(),
        }
    }

    /// The same command fed `bytes` on stdin.
    pub fn stdin(mut self, bytes: &[u8]) -> Command {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// The same command with another time bound.
    pub fn timeout(mut self, timeout: Duration) -> Command {
        self.timeout = timeout;
        self
    }

    /// The command as a shell would need it: for messages, and for targets that pass one string.
    pub fn display(&self) -> String {
        quote_argv(&self.argv)
    }
}

/// Each command's bound: `PGNODE_E2E_CMD_TIMEOUT` seconds, default 420.
pub fn default_timeout() -> Duration {
    let secs = std::env::var("PGNODE_E2E_CMD_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(420);
    Duration::from_secs(secs)
}

/// What a command did: exit code (`None`: killed by a signal), stdout, stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout then stderr, as `2>&1` would mostly show them.
    pub fn combined(&self) -> String {
        match (self.stdout.is_empty(), self.stderr.is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => {
                let sep = if self.stdout.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                format!("{}{sep}{}", self.stdout, self.stderr)
            }
        }
    }
}

/// Where pgnode's files live on the nodes of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLayout {
    /// The config pgnode reads (`--config`).
    pub config: String,
    /// The secrets file next to it.
    pub secrets: String,
    /// The provisioning command, to which the role is appended (what Vagrant or Ansible runs).
    pub provision: Vec<String>,
}

impl GuestLayout {
    /// Vagrant's synced folder, which the lab mounts too.
    pub fn vagrant() -> GuestLayout {
        GuestLayout {
            config: "/vagrant/config/cluster.json".into(),
            secrets: "/vagrant/config/secrets.json".into(),
            provision: vec!["bash".into(), "/vagrant/provision/guest.sh".into()],
        }
    }

    /// What the Ansible playbook installs (provision/ansible/node.yml).
    pub fn ansible() -> GuestLayout {
        GuestLayout {
            config: "/etc/pgnode/cluster.json".into(),
            secrets: "/etc/pgnode/secrets.json".into(),
            provision: vec![
                "env".into(),
                "PGNODE_CONFIG=/etc/pgnode/cluster.json".into(),
                "bash".into(),
                "/usr/local/lib/pgnode/guest.sh".into(),
            ],
        }
    }
}

/// Runs commands on nodes. Implementations must bound each command by its `timeout`.
pub trait Target: Send + Sync {
    /// Runs `cmd` as root on `node`. Err: the command could not be started or timed out.
    fn exec(&self, node: &str, cmd: &Command) -> io::Result<Output>;

    /// "lab", "vagrant" or "ssh".
    fn name(&self) -> &str;

    /// Where pgnode's config, secrets and provisioning script are on the nodes.
    fn layout(&self) -> GuestLayout {
        GuestLayout::vagrant()
    }

    /// Whether every node runs, with the target's own evidence (`provision/lab status`);
    /// `None` where the target has no such view (the checks' commands then tell).
    fn status(&self) -> Option<io::Result<Output>> {
        None
    }

    /// True when the host's own network namespace must have no address or route in the nodes'
    /// subnet (the lab's network rule); false where the host reaches the nodes directly.
    fn host_isolated(&self) -> bool {
        false
    }

    /// A block for the end of the report: (title, text), e.g. the lab's phase timings.
    fn timings(&self) -> Option<(String, String)> {
        None
    }

    /// Fault hooks (link down/up, power off/on) for the fault drills; `None` where the target
    /// cannot break its nodes on purpose (those drills then fail saying so).
    fn faults(&self) -> Option<&dyn crate::faults::Faults> {
        None
    }
}

/// The lab: `provision/lab exec NODE -- argv...` for instance `PGNODE_LAB_INSTANCE`.
#[derive(Debug, Clone)]
pub struct Lab {
    pub script: PathBuf,
    pub instance: Option<String>,
}

impl Lab {
    /// The lab of the checkout at `repo`, instance from `PGNODE_LAB_INSTANCE` (empty: default).
    pub fn new(repo: &Path) -> Lab {
        Lab {
            script: repo.join("provision/lab"),
            instance: std::env::var("PGNODE_LAB_INSTANCE")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// The local process for a lab subcommand (`exec`, `status`, `timings`).
    pub fn local(&self, args: &[String]) -> Local {
        let mut argv = vec![self.script.display().to_string()];
        argv.extend(args.iter().cloned());
        let env = match &self.instance {
            Some(i) => vec![("PGNODE_LAB_INSTANCE".to_string(), i.clone())],
            None => Vec::new(),
        };
        Local {
            argv,
            env,
            cwd: None,
        }
    }

    /// `provision/lab exec NODE -- argv...`: the lab's exec passes argv and stdio through.
    pub fn exec_local(&self, node: &str, cmd: &Command) -> Local {
        let mut args = vec!["exec".to_string(), node.to_string(), "--".to_string()];
        args.extend(cmd.argv.iter().cloned());
        self.local(&args)
    }
}

impl Target for Lab {
    fn exec(&self, node: &str, cmd: &Command) -> io::Result<Output> {
        run_bounded(
            &self.exec_local(node, cmd),
            cmd.stdin.as_deref(),
            cmd.timeout,
        )
    }
    fn name(&self) -> &str {
        "lab"
    }
    fn status(&self) -> Option<io::Result<Output>> {
        Some(run_bounded(
            &self.local(&["status".into()]),
            None,
            default_timeout(),
        ))
    }
    fn host_isolated(&self) -> bool {
        true
    }
    /// The lab's guests read the config provision/lab was told (`PGNODE_LAB_CONFIG`, relative
    /// to the checkout, e.g. config/e2e-two-standbys.json) as /vagrant/PATH.
    fn layout(&self) -> GuestLayout {
        let mut l = GuestLayout::vagrant();
        if let Some(c) = std::env::var("PGNODE_LAB_CONFIG")
            .ok()
            .filter(|c| !c.is_empty())
        {
            l.config = format!("/vagrant/{c}");
            // As provision/lab runs the roles: guest.sh reads PGNODE_CONFIG, else cluster.json.
            let mut argv = vec!["env".to_string(), format!("PGNODE_CONFIG={}", l.config)];
            argv.append(&mut l.provision);
            l.provision = argv;
        }
        l
    }
    fn faults(&self) -> Option<&dyn crate::faults::Faults> {
        Some(self)
    }
    fn timings(&self) -> Option<(String, String)> {
        let out = run_bounded(
            &self.local(&["timings".into()]),
            None,
            Duration::from_secs(30),
        )
        .ok()?;
        let text = out.stdout.trim_end().to_string();
        (out.success() && !text.is_empty())
            .then(|| ("lab timings (last provision/lab up)".into(), text))
    }
}

/// Vagrant: `vagrant ssh NODE --no-tty -c 'cd / && sudo -n -- argv...'` from the directory of the
/// Vagrantfile. The remote side runs the string through the login shell, hence the quoting.
#[derive(Debug, Clone)]
pub struct Vagrant {
    pub dir: PathBuf,
}

impl Vagrant {
    /// The local process for `cmd` on `node`.
    pub fn exec_local(&self, node: &str, cmd: &Command) -> Local {
        // From / as the lab's exec does: runuser'd tools then do not warn about the home directory.
        let remote = format!("cd / && sudo -n -- {}", quote_argv(&cmd.argv));
        Local {
            argv: ["vagrant", "ssh", node, "--no-tty", "-c", &remote]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env: Vec::new(),
            cwd: Some(self.dir.clone()),
        }
    }
}

impl Target for Vagrant {
    fn exec(&self, node: &str, cmd: &Command) -> io::Result<Output> {
        run_bounded(
            &self.exec_local(node, cmd),
            cmd.stdin.as_deref(),
            cmd.timeout,
        )
    }
    fn name(&self) -> &str {
        "vagrant"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Command {
        Command::new(&["psql", "-c", "select 'a b'; -- $HOME \"x\"\nselect 1"])
    }

    #[test]
    fn lab_passes_argv_untouched() {
        let lab = Lab {
            script: "/repo/provision/lab".into(),
            instance: Some("e7".into()),
        };
        let l = lab.exec_local("master", &hostile());
        assert_eq!(
            l.argv,
            [
                "/repo/provision/lab",
                "exec",
                "master",
                "--",
                "psql",
                "-c",
                "select 'a b'; -- $HOME \"x\"\nselect 1"
            ]
        );
        assert_eq!(
            l.env,
            [("PGNODE_LAB_INSTANCE".to_string(), "e7".to_string())]
        );
    }

    #[test]
    fn vagrant_quotes_for_the_remote_shell() {
        let v = Vagrant {
            dir: "/repo".into(),
        };
        let l = v.exec_local("slave", &hostile());
        assert_eq!(&l.argv[..5], ["vagrant", "ssh", "slave", "--no-tty", "-c"]);
        assert_eq!(
            l.argv[5],
            "cd / && sudo -n -- psql -c 'select '\\''a b'\\''; -- $HOME \"x\"\nselect 1'"
        );
        assert_eq!(l.cwd.as_deref(), Some(Path::new("/repo")));
    }

    #[test]
    fn output_helpers() {
        let o = Output {
            code: Some(0),
            stdout: "a".into(),
            stderr: "b\n".into(),
        };
        assert!(o.success());
        assert_eq!(o.combined(), "a\nb\n");
        assert!(!Output { code: None, ..o }.success());
    }

    #[test]
    fn command_defaults() {
        let c = Command::new(&["true"])
            .stdin(b"x")
            .timeout(Duration::from_secs(3));
        assert_eq!(
            (c.stdin.as_deref(), c.timeout),
            (Some(&b"x"[..]), Duration::from_secs(3))
        );
        assert_eq!(Command::new(&["echo", "a b"]).display(), "echo 'a b'");
    }
}
