//! Generated secrets: role passwords and two SSH key pairs (the key `archive_command` uses on the
//! primary, and the backup node's host key, pinned in the primary's known_hosts).
//!
//! They live in `secrets.json` beside the config (git-ignored, mode 0600). The file is created
//! without races: it is written completely under a temporary name and then hard-linked into
//! place, which fails if another node got there first, in which case that node's set is used.
//! Secrets are never printed, never logged and never put on a command line.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Cluster;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::tls::{self, Tls};
use std::net::Ipv4Addr;

/// An SSH key pair in OpenSSH format.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

/// The secrets of one cluster.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub version: u32,
    /// Password of each PostgreSQL role pgnode creates, by role name.
    pub passwords: BTreeMap<String, String>,
    /// Used by the primary's postgres user to run barman-wal-archive on the backup node.
    pub archive_ssh_key: KeyPair,
    /// The backup node's SSH host key, pinned on the primary.
    pub backup_host_key: KeyPair,
    /// The cluster CA and each node's certificate. Absent in files written before pgnode had
    /// TLS: the next run adds it (see [`load_or_create`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secrets(<{} passwords, 2 key pairs{} redacted>)",
            self.passwords.len(),
            if self.tls.is_some() { ", TLS keys" } else { "" }
        )
    }
}

impl Secrets {
    /// The password of `user`.
    ///
    /// Errors: [`Error::Secrets`] when the file has none for that role.
    pub fn password(&self, user: &str, path: &Path) -> Result<&str> {
        self.passwords.get(user).map(String::as_str).ok_or_else(|| Error::Secrets {
            path: path.to_path_buf(),
            message: format!("no password for role {user:?} (was the role renamed in the config? add it or move the file aside to regenerate all secrets)"),
        })
    }

    /// Placeholder secrets for `--dry-run` before the real ones exist.
    pub fn placeholder(users: &[&str]) -> Secrets {
        let p = |s: &str| format!("<{s} generated on first run>");
        Secrets {
            version: 1,
            passwords: users
                .iter()
                .map(|u| (u.to_string(), p("password")))
                .collect(),
            archive_ssh_key: KeyPair {
                private: p("private key"),
                public: p("ssh-ed25519 public key"),
            },
            backup_host_key: KeyPair {
                private: p("private key"),
                public: p("ssh-ed25519 public key"),
            },
            tls: None,
        }
    }

    /// The TLS material when it covers `nodes`, else why not.
    pub fn tls_for(&self, nodes: &[(String, Ipv4Addr)]) -> std::result::Result<&Tls, String> {
        match &self.tls {
            None => Err("no TLS material yet".into()),
            Some(t) => match t.missing(nodes) {
                Some(why) => Err(why),
                None => Ok(t),
            },
        }
    }
}

/// The secrets path that belongs to a config path: `secrets.json` in the same directory.
pub fn path_for(config: &Path) -> PathBuf {
    config
        .parent()
        .unwrap_or(Path::new("."))
        .join("secrets.json")
}

/// Reads the secrets file if it exists.
///
/// Errors: [`Error::Secrets`] when it is readable by others, unparsable or incomplete.
pub fn load(path: &Path, users: &[&str]) -> Result<Option<Secrets>> {
    let Some(s) = load_file(path)? else {
        return Ok(None);
    };
    for u in users {
        s.password(u, path)?;
    }
    Ok(Some(s))
}

/// Passwords a later pgnode added (the monitoring role and endpoints): a file written before
/// lacks them, and the next run generates them, keeping every other secret.
pub const ADDED_LATER: [&str; 3] = [
    crate::config::Cluster::MONITOR_USER,
    crate::config::Cluster::WEB_PASSWORD,
    crate::config::Cluster::WEB_SALT,
];

/// The names in `users` the file has no password for.
pub fn missing_passwords<'a>(s: &Secrets, users: &[&'a str]) -> Vec<&'a str> {
    users
        .iter()
        .filter(|u| !s.passwords.contains_key(**u))
        .copied()
        .collect()
}

/// Reads the secrets file if it exists; of `users`, only the passwords in `later` (the cluster's
/// [`crate::config::Cluster::later_secret_names`]) may be missing.
///
/// Errors: [`Error::Secrets`] when it is readable by others, unparsable, or lacks another
/// password.
pub fn load_any(path: &Path, users: &[&str], later: &[&str]) -> Result<Option<Secrets>> {
    let Some(s) = load_file(path)? else {
        return Ok(None);
    };
    for u in users.iter().filter(|u| !later.contains(u)) {
        s.password(u, path)?;
    }
    Ok(Some(s))
}

fn load_file(path: &Path) -> Result<Option<Secrets>> {
    let bad = |message: String| Error::Secrets {
        path: path.to_path_buf(),
        message,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode is {mode:04o}; it holds passwords and keys and must be 0600 (chmod 600 it)"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let s: Secrets =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a pgnode secrets file: {e}")))?;
    if s.version != 1 {
        return Err(bad(format!("unsupported version {}", s.version)));
    }
    plausible(&s).map_err(bad)?;
    Ok(Some(s))
}

/// Cheap shape checks, so that a damaged file is refused before anything is written rather
/// than failing later inside ssh or psql with a message that does not name it.
fn plausible(s: &Secrets) -> std::result::Result<(), String> {
    for (user, pw) in &s.passwords {
        if pw.len() < 16 || !pw.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "passwords.{user} is not a generated password (16+ letters and digits)"
            ));
        }
    }
    for (name, k) in [
        ("archive_ssh_key", &s.archive_ssh_key),
        ("backup_host_key", &s.backup_host_key),
    ] {
        if !k.private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
            || !k
                .private
                .trim_end()
                .ends_with("-----END OPENSSH PRIVATE KEY-----")
        {
            return Err(format!("{name}.private is not an OpenSSH private key"));
        }
        if !k.public.starts_with("ssh-ed25519 ") {
            return Err(format!("{name}.public is not an ssh-ed25519 public key"));
        }
    }
    match &s.tls {
        Some(t) => t.plausible(),
        None => Ok(()),
    }
}

/// The `(name, address)` of every node: what the TLS certificates are issued for.
pub fn tls_nodes(cluster: &Cluster) -> Vec<(String, Ipv4Addr)> {
    cluster
        .nodes()
        .iter()
        .map(|n| (n.name.to_string(), n.address))
        .collect()
}

/// Loads the secrets, generating and publishing them first if nobody has yet, and adding TLS
/// material for `nodes` when the file has none (or none for a node, or for its address).
/// Returns the secrets and whether this call created or changed them.
///
/// Errors: [`Error::Secrets`]/[`Error::Write`] naming the file; ssh-keygen or openssl failures.
pub fn load_or_create(
    path: &Path,
    users: &[&str],
    later: &[&str],
    nodes: &[(String, Ipv4Addr)],
) -> Result<(Secrets, bool)> {
    if let Some(s) = load_any(path, users, later)? {
        if s.tls_for(nodes).is_ok() && missing_passwords(&s, users).is_empty() {
            return Ok((s, false));
        }
        return replace_tls(path, users, later, nodes, false);
    }
    let mut fresh = generate(users, path)?;
    fresh.tls = Some(tls::generate(nodes)?);
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // Guests share the config directory and may have equal PIDs: the name must be random.
    let tmp = dir.join(format!(
        ".secrets.json.{}.tmp",
        crate::files::unique_suffix()
    ));
    let publish = (|| -> std::io::Result<bool> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let json = serde_json::to_string_pretty(&fresh).map_err(std::io::Error::other)?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        // link() is atomic and fails if the name exists: the first node to publish wins.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    if publish.map_err(werr)? {
        return Ok((fresh, true));
    }
    let s = load(path, users)?.ok_or_else(|| Error::Secrets {
        path: path.to_path_buf(),
        message: "vanished while being read".into(),
    })?;
    Ok((s, false))
}

/// Generates new TLS material (a new CA and every node's certificate) into the existing file
/// when `force` (`pgnode secrets --rotate-tls`) or when it has none; else, when it does not
/// cover `nodes`, adds the missing nodes' certificates signed by the existing CA. Generates the
/// passwords of `users` the file lacks, keeping every other secret. Serialised by a lock beside
/// the file, so that two nodes upgrading an old file at once do not make two CAs.
///
/// Errors: as [`load_or_create`]; [`Error::Secrets`] when the file does not exist.
pub fn replace_tls(
    path: &Path,
    users: &[&str],
    later: &[&str],
    nodes: &[(String, Ipv4Addr)],
    force: bool,
) -> Result<(Secrets, bool)> {
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let lock_path = path.with_file_name(".secrets.json.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(werr)?;
    lock.lock().map_err(werr)?;
    let mut s = load_any(path, users, later)?.ok_or_else(|| Error::Secrets {
        path: path.to_path_buf(),
        message: "does not exist (run pgnode secrets first)".into(),
    })?;
    let missing = missing_passwords(&s, users);
    if !force && s.tls_for(nodes).is_ok() && missing.is_empty() {
        return Ok((s, false));
    }
    for u in missing {
        s.passwords.insert(u.to_string(), random_password(path)?);
    }
    // Only a rotation, or a file without TLS yet, makes a new CA; a node added to the config
    // gets its certificate from the CA every node already trusts.
    if force || s.tls_for(nodes).is_err() {
        s.tls = Some(match (&s.tls, force) {
            (Some(t), false) => tls::extend(t, nodes)?,
            _ => tls::generate(nodes)?,
        });
    }
    let tmp = path.with_file_name(format!(
        ".secrets.json.{}.tmp",
        crate::files::unique_suffix()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let json = serde_json::to_string_pretty(&s).map_err(std::io::Error::other)?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(werr)?;
    Ok((s, true))
}

fn generate(users: &[&str], path: &Path) -> Result<Secrets> {
    let mut passwords = BTreeMap::new();
    for u in users {
        passwords.insert(u.to_string(), random_password(path)?);
    }
    Ok(Secrets {
        version: 1,
        passwords,
        archive_ssh_key: ssh_keypair("pgnode archive_command (postgres@master)")?,
        backup_host_key: ssh_keypair("pgnode backup host key")?,
        tls: None,
    })
}

/// 32 characters from [A-Za-z0-9]: safe in .pgpass, conninfo strings and SQL literals alike.
fn random_password(path: &Path) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = std::fs::File::open("/dev/urandom").map_err(|source| Error::Read {
        path: "/dev/urandom".into(),
        source,
    })?;
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        f.read_exact(&mut buf).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Rejection sampling keeps the distribution uniform (248 = 4 * 62).
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| ALPHABET[(*b % 62) as usize] as char),
        );
    }
    out.truncate(32);
    Ok(out)
}

fn ssh_keypair(comment: &str) -> Result<KeyPair> {
    let dir = std::env::temp_dir().join(format!("pgnode-keygen-{}", crate::files::unique_suffix()));
    let werr = |source| Error::Write {
        path: dir.clone(),
        source,
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(werr)?;
    let key = dir.join("key");
    let result = Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(key.to_string_lossy())
        .run()
        .map_err(Error::from)
        .and_then(|_| {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|source| Error::Read {
                    path: p.to_path_buf(),
                    source,
                })
            };
            Ok(KeyPair {
                private: read(&key)?,
                public: read(&dir.join("key.pub"))?.trim().to_string(),
            })
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests;
