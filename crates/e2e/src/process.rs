//! Runs one local process (the lab's `exec`, `vagrant ssh`, `ssh`) bounded in time: on timeout
//! the whole process group is killed, so a command hung inside a guest cannot hang the suite.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::target::Output;

/// A local process to start: argv, extra environment, working directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

enum Event {
    Exited(io::Result<ExitStatus>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How long to wait for the pipes once the process group was killed (a descendant that left the
/// group may still hold them: the output read so far is what we report).
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// Runs `local` with `stdin` (or /dev/null) and returns its output once it exited and closed its
/// pipes. Errors: could not start (io error of the spawn), or `TimedOut` after `timeout`, with
/// the tail of what it printed in the message.
pub fn run_bounded(local: &Local, stdin: Option<&[u8]>, timeout: Duration) -> io::Result<Output> {
    let Some((program, args)) = local.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(local.env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills everything it started.
        .process_group(0);
    if let Some(dir) = &local.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        let bytes = bytes.to_vec();
        // A child that exits without reading its input gets EPIPE here: not our failure.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    spawn_reader(child.stdout.take(), tx.clone(), Event::Stdout);
    spawn_reader(child.stderr.take(), tx.clone(), Event::Stderr);
    thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait()));
    });
    collect(rx, pid, timeout)
}

fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    tx: mpsc::Sender<Event>,
    wrap: fn(Vec<u8>) -> Event,
) {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(wrap(buf));
    });
}

#[derive(Default)]
struct Collected {
    status: Option<io::Result<ExitStatus>>,
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
}

impl Collected {
    fn take(&mut self, ev: Event) {
        match ev {
            Event::Exited(s) => self.status = Some(s),
            Event::Stdout(b) => self.stdout = Some(b),
            Event::Stderr(b) => self.stderr = Some(b),
        }
    }
    fn done(&self) -> bool {
        self.status.is_some() && self.stdout.is_some() && self.stderr.is_some()
    }
    fn text(b: &Option<Vec<u8>>) -> String {
        String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
    }
}

fn collect(rx: mpsc::Receiver<Event>, pid: u32, timeout: Duration) -> io::Result<Output> {
    let deadline = Instant::now() + timeout;
    let mut got = Collected::default();
    while !got.done() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => got.take(ev),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => return timed_out(rx, got, pid, timeout),
        }
    }
    let status = got
        .status
        .take()
        .unwrap_or_else(|| Err(io::Error::other("no exit status")))?;
    Ok(Output {
        code: status.code(),
        stdout: Collected::text(&got.stdout),
        stderr: Collected::text(&got.stderr),
    })
}

fn timed_out(
    rx: mpsc::Receiver<Event>,
    mut got: Collected,
    pid: u32,
    timeout: Duration,
) -> io::Result<Output> {
    kill_group(pid);
    let until = Instant::now() + DRAIN_AFTER_KILL;
    while !got.done() {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(ev) => got.take(ev),
            Err(_) => break,
        }
    }
    let out = Output {
        code: None,
        stdout: Collected::text(&got.stdout),
        stderr: Collected::text(&got.stderr),
    };
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "timed out after {}s (process group killed); output so far:\n{}",
            timeout.as_secs(),
            crate::text::tail(&out.combined(), 20)
        ),
    ))
}

/// SIGKILL to the whole process group `pid` leads (std has no killpg; procps' kill does it).
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Local {
        Local {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            ..Local::default()
        }
    }

    #[test]
    fn captures_stdout_stderr_and_code() {
        let out = run_bounded(
            &sh("echo out; echo err >&2; exit 3"),
            None,
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
    }

    #[test]
    fn passes_stdin_through() {
        let out = run_bounded(
            &sh("cat"),
            Some(b"line 1\n$x 'y'\n"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out.stdout, "line 1\n$x 'y'\n");
    }

    #[test]
    fn timeout_kills_the_whole_group_and_keeps_the_output() {
        let start = Instant::now();
        // The grandchild (sleep) holds the pipes: only killing the group ends it.
        let err = run_bounded(
            &sh("echo started; sleep 60 & wait"),
            None,
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("started"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let local = Local {
            argv: vec!["/nonexistent/program".into()],
            ..Local::default()
        };
        let err = run_bounded(&local, None, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
