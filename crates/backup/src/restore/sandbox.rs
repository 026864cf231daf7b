//! The restore sandbox: one directory on the backup node that belongs to `pgnode restore`
//! alone (default /var/lib/barman/pgnode-restore, owned by barman, 0700). It holds the
//! recovered data directory, the throwaway server's socket directory and its log. A run takes
//! its lock, stops a server a killed run left behind and removes that run's leftovers. Nothing
//! outside the sandbox is ever removed, and a server kept on purpose (`--keep`) is not touched
//! until `pgnode restore --discard`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgnode_core::exec::Cmd;
use pgnode_core::{Error, Result};

/// Where the sandbox lives on the backup node.
pub const SANDBOX: &str = "/var/lib/barman/pgnode-restore";

/// An opened, locked sandbox (the lock is released when it is dropped or the process dies).
pub struct Sandbox {
    root: PathBuf,
    _lock: fs::File,
}

fn refused(msg: String) -> Error {
    Error::Refused(msg)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

impl Sandbox {
    /// Creates (0700, owned by `owner` when given) and locks the sandbox.
    ///
    /// Errors: [`Error::Refused`] when the path is a symlink or not a directory, or another
    /// run holds the lock; [`Error::Write`] when it cannot be created.
    pub fn open(root: &Path, owner: Option<(u32, u32)>) -> Result<Sandbox> {
        match fs::symlink_metadata(root) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(refused(format!(
                    "{} is not a plain directory (a symlink or a file): refusing to use it as the restore sandbox",
                    root.display()
                )));
            }
            Ok(_) => {}
            Err(_) => fs::DirBuilder::new()
                .mode(0o700)
                .create(root)
                .map_err(io(root))?,
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(io(root))?;
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        let lock_path = root.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(refused(format!(
                "another pgnode restore holds {}: wait for it to finish",
                lock_path.display()
            )));
        }
        Ok(Sandbox {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The recovered data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The throwaway server's socket directory (nobody else can reach it: 0700).
    pub fn sock(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The throwaway server's log (kept after a run for post-mortems).
    pub fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    fn kept(&self) -> PathBuf {
        self.root.join("KEPT")
    }

    /// Marks the running server as kept on purpose.
    pub fn mark_kept(&self, how: &str) -> Result<()> {
        fs::write(self.kept(), how).map_err(io(&self.kept()))
    }

    /// The PID of a live postmaster on the data directory, if any.
    pub fn running_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // A stale pid file whose number now belongs to another process is not our server.
        (comm.trim() == "postgres").then_some(pid)
    }

    /// Refuses while a server kept with `--keep` is still recorded in the sandbox.
    ///
    /// Errors: [`Error::Refused`] naming how to remove it.
    pub fn refuse_if_kept(&self) -> Result<()> {
        match fs::read_to_string(self.kept()) {
            Ok(how) => Err(refused(format!(
                "a restored server kept with --keep is in {} ({}); remove it first: pgnode restore --discard",
                self.root.display(),
                how.trim()
            ))),
            Err(_) => Ok(()),
        }
    }

    /// Stops a leftover server (immediate: it is a throwaway) and removes the data and socket
    /// directories and the kept marker. Returns what it did, for the report.
    ///
    /// Errors: the stop failed, or a directory could not be removed.
    pub fn clean(&self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if let Some(pid) = self.running_pid() {
            let major = fs::read_to_string(self.data().join("PG_VERSION")).unwrap_or_default();
            Cmd::new(format!("/usr/lib/postgresql/{}/bin/pg_ctl", major.trim()))
                .user("barman")
                .args(["-D", &self.data().to_string_lossy()])
                .args(["-m", "immediate", "-w", "-t", "60", "stop"])
                .run()?;
            done.push(format!("stopped the restored server (pid {pid})"));
        }
        for dir in [self.data(), self.sock()] {
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {
                    fs::remove_dir_all(&dir).map_err(io(&dir))?;
                    done.push(format!("removed {}", dir.display()));
                }
                // A symlink or file where a directory belongs: remove the link, never its target.
                Ok(_) => {
                    fs::remove_file(&dir).map_err(io(&dir))?;
                    done.push(format!("removed {}", dir.display()));
                }
                Err(_) => {}
            }
        }
        let _ = fs::remove_file(self.kept());
        Ok(done)
    }

    /// Creates the socket directory (0700, owned like the sandbox).
    ///
    /// Errors: [`Error::Write`].
    pub fn make_sock(&self) -> Result<()> {
        let s = self.sock();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&s)
            .map_err(io(&s))?;
        let m = fs::metadata(&self.root).map_err(io(&self.root))?;
        std::os::unix::fs::chown(&s, Some(m.uid()), Some(m.gid())).map_err(io(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "pgnode-sandbox-{name}-{}",
            pgnode_core::files::unique_suffix()
        ));
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn refuses_a_symlink_a_file_and_a_second_run() {
        let base = scratch("refusals");
        let target = base.join("elsewhere");
        fs::create_dir(&target).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = Sandbox::open(&link, None).err().unwrap().to_string();
        assert!(e.contains("not a plain directory"), "{e}");
        fs::write(base.join("file"), "x").unwrap();
        assert!(Sandbox::open(&base.join("file"), None).is_err());
        let root = base.join("sandbox");
        let first = Sandbox::open(&root, None).unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let e = Sandbox::open(&root, None).err().unwrap().to_string();
        assert!(e.contains("another pgnode restore holds"), "{e}");
        drop(first);
        Sandbox::open(&root, None).unwrap();
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn cleans_leftovers_inside_only_and_respects_a_kept_server() {
        let base = scratch("clean");
        let outside = base.join("precious");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("file"), "keep me").unwrap();
        let sb = Sandbox::open(&base.join("sandbox"), None).unwrap();
        fs::create_dir_all(sb.data().join("base/1")).unwrap();
        fs::write(sb.data().join("postmaster.pid"), "999999999\n").unwrap();
        // The socket directory replaced by a link to a directory outside the sandbox.
        std::os::unix::fs::symlink(&outside, sb.sock()).unwrap();
        assert_eq!(sb.running_pid(), None, "a stale pid is not a server");
        let done = sb.clean().unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(!sb.data().exists() && fs::symlink_metadata(sb.sock()).is_err());
        assert_eq!(fs::read_to_string(outside.join("file")).unwrap(), "keep me");
        sb.mark_kept("port 5499").unwrap();
        let e = sb.refuse_if_kept().unwrap_err().to_string();
        assert!(
            e.contains("pgnode restore --discard") && e.contains("port 5499"),
            "{e}"
        );
        sb.clean().unwrap();
        sb.refuse_if_kept().unwrap();
        fs::remove_dir_all(base).unwrap();
    }
}
