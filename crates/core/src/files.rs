//! The one place that writes files. A [`FileSpec`] is the whole wanted state of a file (bytes,
//! mode, owner, group); [`inspect`] compares it with the node and [`write`] converges it
//! atomically: temp file in the same directory, mode and owner set before the bytes land,
//! fsync, rename. Every path is taken relative to a root so planning runs unprivileged.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::system;

/// The wanted state of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute path on the node (joined under the root).
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Secret content is never shown in diffs or logs.
    pub secret: bool,
    /// Mode for a parent directory pgnode creates (e.g. 0700 for `~/.ssh`).
    pub dir_mode: u32,
}

impl FileSpec {
    /// A file with the given content, owner and mode (group = owner, parent dirs 0755).
    pub fn new(
        path: impl Into<PathBuf>,
        content: impl Into<Vec<u8>>,
        owner: &str,
        mode: u32,
    ) -> Self {
        FileSpec {
            path: path.into(),
            content: content.into(),
            mode,
            owner: owner.to_string(),
            group: owner.to_string(),
            secret: false,
            dir_mode: 0o755,
        }
    }

    /// Marks the content as secret.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Sets the group.
    pub fn group(mut self, g: &str) -> Self {
        self.group = g.to_string();
        self
    }

    /// Sets the mode of a parent directory that has to be created.
    pub fn dir_mode(mut self, m: u32) -> Self {
        self.dir_mode = m;
        self
    }
}

/// How a file on the node differs from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Same,
    Missing,
    Differs {
        what: Vec<&'static str>,
        old: Vec<u8>,
    },
}

/// A name part no other process (in this or another guest sharing a folder) will pick:
/// pid, a per-process counter and random bytes.
pub fn unique_suffix() -> String {
    use std::io::Read as _;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut rnd = [0u8; 6];
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut rnd));
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{seq}-{hex}", std::process::id())
}

/// Joins an absolute node path under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Compares the node's file with `spec`. With `check_owner` false (unprivileged planning),
/// ownership is not compared.
///
/// Errors: [`Error::Read`] when the file exists but cannot be read; [`Error::NoSuchAccount`].
pub fn inspect(root: &Path, spec: &FileSpec, check_owner: bool) -> Result<FileState> {
    let path = under(root, &spec.path);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let old = fs::read(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let mut what = Vec::new();
    if old != spec.content {
        what.push("content");
    }
    if meta.permissions().mode() & 0o7777 != spec.mode {
        what.push("mode");
    }
    if check_owner {
        let (uid, gid) = system::ids(root, &spec.owner, &spec.group)?;
        if meta.uid() != uid || meta.gid() != gid {
            what.push("owner");
        }
    }
    Ok(if what.is_empty() {
        FileState::Same
    } else {
        FileState::Differs { what, old }
    })
}

/// Converges the file; returns whether anything changed. With `set_owner` false the owner
/// is left alone (unprivileged rendering).
///
/// Errors: [`Error::Write`] naming the path, [`Error::NoSuchAccount`].
pub fn write(root: &Path, spec: &FileSpec, set_owner: bool) -> Result<bool> {
    if inspect(root, spec, set_owner)? == FileState::Same {
        return Ok(false);
    }
    let path = under(root, &spec.path);
    let werr = |source| Error::Write {
        path: path.clone(),
        source,
    };
    let ids = if set_owner {
        Some(system::ids(root, &spec.owner, &spec.group)?)
    } else {
        None
    };
    let dir = path
        .parent()
        .ok_or_else(|| werr(std::io::Error::other("no parent directory")))?;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(werr)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(spec.dir_mode)).map_err(werr)?;
        if let Some((u, g)) = ids {
            std::os::unix::fs::chown(dir, Some(u), Some(g)).map_err(werr)?;
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pgnode-{}", unique_suffix()));
    let _ = fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<()> {
        // Created with the final mode (0600 for secrets) before any byte is written.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(spec.mode)
            .open(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(spec.mode))?;
        if let Some((u, g)) = ids {
            std::os::unix::fs::chown(&tmp, Some(u), Some(g))?;
        }
        f.write_all(&spec.content)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pgnode-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_is_idempotent_and_fixes_mode() {
        let root = tmp();
        let spec = FileSpec::new("/etc/x/a.conf", "one\n", "root", 0o600).dir_mode(0o700);
        assert_eq!(inspect(&root, &spec, false).unwrap(), FileState::Missing);
        assert!(write(&root, &spec, false).unwrap());
        assert!(!write(&root, &spec, false).unwrap());
        let p = root.join("etc/x/a.conf");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(root.join("etc/x"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            matches!(inspect(&root, &spec, false).unwrap(), FileState::Differs { ref what, .. } if what == &["mode"])
        );
        assert!(write(&root, &spec, false).unwrap());
        let spec2 = FileSpec {
            content: b"two\n".to_vec(),
            ..spec
        };
        match inspect(&root, &spec2, false).unwrap() {
            FileState::Differs { what, old } => {
                assert_eq!(what, ["content"]);
                assert_eq!(old, b"one\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(write(&root, &spec2, false).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two\n");
        let leftovers: Vec<_> = fs::read_dir(root.join("etc/x")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind");
        fs::remove_dir_all(root).unwrap();
    }
}
