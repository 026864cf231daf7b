//! The one place that runs processes. A [`Cmd`] is data first (program, arguments, environment,
//! user, stdin) and prints itself shell-quoted, so plans, logs and errors show exactly what runs.
//! Secret values (passwords in the environment, SQL on stdin) are never part of that text and
//! never in argv.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

thread_local! {
    /// Outputs of [`Cmd::probe_shared`] while sharing is on (see [`share_probes`]).
    static SHARED: RefCell<Option<HashMap<String, Output>>> = const { RefCell::new(None) };
}

/// Turns sharing of probe outputs on, keeping what was shared since the last [`forget_shared`].
/// The step runner calls it before each step's first check: on a converged node nothing changes
/// between those checks, so one `barman check` (a Python process, 0.3-2 s) can answer every
/// step that reads it.
pub fn share_probes() {
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(HashMap::new());
        }
    });
}

/// Forgets every shared output and turns sharing off: the runner calls it before a step changes
/// anything (and before the waits and rechecks of that change, which must see fresh facts).
pub fn forget_shared() {
    SHARED.with(|s| *s.borrow_mut() = None);
}

/// How a command failed. "Not found", "could not start" and "exited non-zero" stay apart.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program is not installed (or not on PATH).
    #[error("command not found: {program} (needed for: {cmd})")]
    NotFound { program: String, cmd: String },
    /// The program exists but could not be started.
    #[error("could not start `{cmd}`")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{cmd}` exited with status {status}; stderr tail:\n{stderr}")]
    Failed {
        cmd: String,
        status: i32,
        stderr: String,
    },
}

/// A captured run of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (-1 when killed by a signal).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A command as data.
#[derive(Clone, Default)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String, bool)>,
    user: Option<String>,
    stdin: Option<(Vec<u8>, bool)>,
    discard: bool,
}

impl Cmd {
    /// A command running `program` (a name resolved on PATH, or an absolute path).
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            ..Default::default()
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, a: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable shown in the printed command.
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into(), false));
        self
    }

    /// Sets an environment variable whose value is secret (printed as `***`).
    pub fn env_secret(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into(), true));
        self
    }

    /// Runs the command as another user, as `runuser -u USER --` would (needs root).
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.to_string());
        self
    }

    /// Feeds `data` on stdin; shown in the printed command as `<<stdin`.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some((data.into(), false));
        self
    }

    /// Feeds secret `data` on stdin; shown as `<<secret stdin`.
    pub fn stdin_secret(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some((data.into(), true));
        self
    }

    /// Sends stdout and stderr to /dev/null instead of capturing them: for commands that leave
    /// a daemon behind (`barman cron` starts receive-wal), which would otherwise hold the pipes
    /// open and block the read.
    pub fn discard_output(mut self) -> Self {
        self.discard = true;
        self
    }

    /// Resolves the program: absolute paths must exist, names must be on PATH.
    pub fn resolve(&self) -> Result<String, CmdError> {
        let not_found = || CmdError::NotFound {
            program: self.program.clone(),
            cmd: self.to_string(),
        };
        if self.program.contains('/') {
            return if Path::new(&self.program).exists() {
                Ok(self.program.clone())
            } else {
                Err(not_found())
            };
        }
        which::which(&self.program)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|_| not_found())
    }

    /// Runs and captures; a non-zero exit is returned as an [`Output`], not an error.
    /// Errors only when the program is missing or cannot start. Use for probes whose
    /// "no" is a documented exit status.
    pub fn probe(&self) -> Result<Output, CmdError> {
        let e = self.expression()?;
        let e = if self.discard {
            e.stdout_null().stderr_null()
        } else {
            e.stdout_capture().stderr_capture()
        };
        let e = match &self.stdin {
            Some((d, _)) => e.stdin_bytes(d.clone()),
            None => e.stdin_null(),
        };
        let out = e.run().map_err(|source| CmdError::Spawn {
            cmd: self.to_string(),
            source,
        })?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// [`Cmd::probe`], but while sharing is on ([`share_probes`]) an identical command (program,
    /// arguments, environment, user and stdin) returns the first call's output instead of running
    /// again. Only for read-only probes whose answer cannot change without a step changing
    /// something. Errors as [`Cmd::probe`] (errors are never shared).
    pub fn probe_shared(&self) -> Result<Output, CmdError> {
        let key = self.share_key();
        if let Some(out) = SHARED.with(|s| s.borrow().as_ref().and_then(|m| m.get(&key).cloned())) {
            return Ok(out);
        }
        let out = self.probe()?;
        SHARED.with(|s| {
            if let Some(m) = s.borrow_mut().as_mut() {
                m.insert(key, out.clone());
            }
        });
        Ok(out)
    }

    /// Everything that makes two commands the same, secret values included (the key never
    /// leaves this process).
    fn share_key(&self) -> String {
        format!(
            "{:?}\0{:?}\0{:?}\0{:?}\0{:?}",
            self.program, self.args, self.env, self.user, self.stdin
        )
    }

    /// Runs `self | to` (a stream too large to hold in memory, e.g. a tar): both must exit 0.
    /// Each side's stderr is captured for the error; `to`'s stdout is returned.
    ///
    /// Errors: either program missing or failing (the first failure is named).
    pub fn pipe(&self, to: &Cmd) -> Result<Output, CmdError> {
        let (from_err, to_err) = (tempfile_pair()?, tempfile_pair()?);
        let left = self.expression()?.stdin_null().stderr_file(from_err.0);
        let right = to.expression()?.stdout_capture().stderr_file(to_err.0);
        let out = left
            .pipe(right)
            .unchecked()
            .run()
            .map_err(|source| CmdError::Spawn {
                cmd: format!("{self} | {to}"),
                source,
            })?;
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut s = String::new();
            let _ = f.rewind().and_then(|_| f.read_to_string(&mut s));
            s
        };
        let (e1, e2) = (read(from_err.1), read(to_err.1));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = out.status.code().unwrap_or(-1);
        // duct reports the right side's status unless it succeeded and the left failed.
        if status != 0 {
            let first = if e1.trim().is_empty() { to } else { self };
            return Err(first.failure(&Output {
                status,
                stdout,
                stderr: format!("{e1}{e2}"),
            }));
        }
        Ok(Output {
            status,
            stdout,
            stderr: format!("{e1}{e2}"),
        })
    }

    fn expression(&self) -> Result<duct::Expression, CmdError> {
        let program = self.resolve()?;
        let mut e = duct::cmd(program, self.args.clone())
            .env("LC_ALL", "C")
            .unchecked();
        if let Some(u) = &self.user {
            // What `runuser -u USER --` does (its printed form), without its PAM session: a
            // session costs about 50 ms here and seconds under emulation, and a run starts
            // dozens of psql. The child takes the account's uid and gid with no supplementary
            // groups (std drops them when root changes uid), and its HOME (~/.pgpass), SHELL,
            // USER and LOGNAME, as su does; PATH and the rest are kept.
            let a = account(u).map_err(|source| CmdError::Spawn {
                cmd: self.to_string(),
                source,
            })?;
            let (uid, gid) = (a.uid, a.gid);
            e = e
                .env("HOME", &a.home)
                .env("SHELL", &a.shell)
                .env("USER", u)
                .env("LOGNAME", u)
                .before_spawn(move |c| {
                    use std::os::unix::process::CommandExt as _;
                    c.uid(uid).gid(gid);
                    Ok(())
                });
        }
        for (k, v, _) in &self.env {
            e = e.env(k, v);
        }
        Ok(e)
    }

    /// Runs and captures; a non-zero exit is an error carrying the command and stderr tail.
    pub fn run(&self) -> Result<Output, CmdError> {
        let out = self.probe()?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failure(&out))
        }
    }

    /// The error for an unsuccessful run of this command (after [`Cmd::probe`]).
    pub fn failure(&self, out: &Output) -> CmdError {
        CmdError::Failed {
            cmd: self.to_string(),
            status: out.status,
            stderr: tail(&out.stderr, &out.stdout, 15),
        }
    }
}

/// A local account, as /etc/passwd has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// `name`'s entry of /etc/passwd (the accounts pgnode runs commands as are local system users
/// the packages create: postgres, barman).
///
/// Errors: the file is unreadable, or has no such user.
pub fn account(name: &str) -> std::io::Result<Account> {
    parse_account(&std::fs::read_to_string("/etc/passwd")?, name).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no user {name} in /etc/passwd"),
        )
    })
}

fn parse_account(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some(Account {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
            shell: f[6].to_string(),
        })
    })
}

/// An anonymous temporary file (unlinked at once), as a write handle and a read handle.
fn tempfile_pair() -> Result<(std::fs::File, std::fs::File), CmdError> {
    let path = std::env::temp_dir().join(format!(
        "pgnode-pipe-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let spawn = |source| CmdError::Spawn {
        cmd: format!("create {}", path.display()),
        source,
    };
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(spawn)?;
    let _ = std::fs::remove_file(&path);
    let r = w.try_clone().map_err(spawn)?;
    Ok((w, r))
}

/// The last `n` lines of stderr (or of stdout when stderr is empty).
fn tail(stderr: &str, stdout: &str, n: usize) -> String {
    let src = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = src.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Quotes a word for a POSIX shell when needed.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if let Some(u) = &self.user {
            words.extend(["runuser", "-u", u.as_str(), "--"].map(String::from));
        }
        for (k, v, secret) in &self.env {
            let v = if *secret { "***" } else { v.as_str() };
            words.push(format!("{k}={}", shell_quote(v)));
        }
        words.push(shell_quote(&self.program));
        words.extend(self.args.iter().map(|a| shell_quote(a)));
        write!(f, "{}", words.join(" "))?;
        match &self.stdin {
            Some((_, true)) => write!(f, " <<secret stdin"),
            Some((_, false)) => write!(f, " <<stdin"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({self})")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn accounts_come_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:102:106:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\nbroken:x:abc:1::/:/bin/sh\n";
        assert_eq!(
            parse_account(passwd, "postgres"),
            Some(Account {
                uid: 102,
                gid: 106,
                home: "/var/lib/postgresql".into(),
                shell: "/bin/bash".into(),
            })
        );
        assert_eq!(parse_account(passwd, "barman"), None);
        assert_eq!(parse_account(passwd, "broken"), None);
        assert_eq!(parse_account(passwd, "post"), None);
    }

    /// As root (CI): the child really runs as the account, with its HOME, and without root's
    /// supplementary groups.
    #[test]
    fn a_command_as_another_user_runs_with_its_ids() {
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().next().unwrap().to_string())
            })
            .unwrap();
        if uid != "0" || account("nobody").is_err() {
            return; // needs root and the nobody account
        }
        let a = account("nobody").unwrap();
        let out = Cmd::new("sh")
            .args(["-c", "id -u; id -g; id -G; echo $HOME $USER"])
            .user("nobody")
            .run()
            .unwrap();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], a.uid.to_string());
        assert_eq!(lines[1], a.gid.to_string());
        assert_eq!(lines[2], a.gid.to_string(), "supplementary groups kept");
        assert_eq!(lines[3], format!("{} nobody", a.home));
        let e = Cmd::new("true")
            .user("no-such-user-pgnode")
            .run()
            .unwrap_err();
        assert!(e.to_string().contains("could not start"), "{e}");
    }
    use super::*;

    #[test]
    fn display_quotes_and_hides_secrets() {
        let c = Cmd::new("psql")
            .args(["-c", "select 1"])
            .env_secret("PGPASSWORD", "hunter2")
            .user("postgres")
            .stdin_secret("ALTER ROLE x PASSWORD 'hunter2'");
        let s = c.to_string();
        assert_eq!(
            s,
            "runuser -u postgres -- PGPASSWORD='***' psql -c 'select 1' <<secret stdin"
        );
        assert!(!s.contains("hunter2"));
    }

    #[test]
    fn not_found_is_distinct_from_failure() {
        let e = Cmd::new("pgnode-no-such-program-xyz").run().unwrap_err();
        assert!(matches!(e, CmdError::NotFound { .. }), "{e}");
        let e = Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]).run();
        match e {
            Err(CmdError::Failed {
                status,
                stderr,
                cmd,
            }) => {
                assert_eq!(status, 3);
                assert!(stderr.contains("boom"));
                assert_eq!(cmd, "sh -c 'echo boom >&2; exit 3'");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn shared_probes_run_once_until_forgotten() {
        let dir = std::env::temp_dir().join(format!("pgnode-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("count");
        // Appends a line per real run and prints how many runs there were.
        let cmd =
            Cmd::new("sh").args(["-c", &format!("echo x >>{0}; wc -l <{0}", count.display())]);
        let runs = |c: &Cmd| c.probe_shared().unwrap().stdout.trim().to_string();
        // Off: every call runs.
        assert_eq!(runs(&cmd), "1");
        assert_eq!(runs(&cmd), "2");
        share_probes();
        assert_eq!(runs(&cmd), "3");
        assert_eq!(runs(&cmd), "3", "shared: the second call did not run");
        // Another stdin is another command.
        assert_eq!(runs(&cmd.clone().stdin("a")), "4");
        share_probes(); // on again: keeps what was shared
        assert_eq!(runs(&cmd), "3");
        forget_shared();
        assert_eq!(runs(&cmd), "5", "forgotten: runs again");
        assert_eq!(runs(&cmd), "6", "and sharing is off");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn probe_returns_documented_no_as_output() {
        let o = Cmd::new("sh").args(["-c", "exit 1"]).probe().unwrap();
        assert_eq!(o.status, 1);
        let o = Cmd::new("cat").stdin("abc").probe().unwrap();
        assert_eq!(o.stdout, "abc");
    }
}
