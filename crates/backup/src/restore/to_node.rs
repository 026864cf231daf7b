//! `pgnode restore --to-node MASTER`, run on the master: disaster recovery from Barman alone.
//! The master pulls the newest backup, with every archived WAL file, through the archive key's
//! forced command (`pgnode-restore-stream SERVER`, the only read that key may run) into a fresh
//! data directory, replays all of it on a new timeline and promotes. An existing data directory
//! is moved aside, never deleted; a running server refuses the whole thing.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgnode_core::config::{Cluster, Node, Role};
use pgnode_core::exec::Cmd;
use pgnode_core::{system, wait, Ctx, Error, Result};

/// How long the restored primary may take to replay the WAL and promote.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(900);

/// The exact request the forced command on the backup node accepts (no client arguments).
pub fn stream_request(server: &str) -> String {
    format!("pgnode-restore-stream {server}")
}

/// Checks `--to-node NAME`: it must name the master of the config, and this machine must be
/// that node (`here`, as detected from host name and addresses).
///
/// Errors: a message for people (the caller exits 2).
pub fn validate<'a>(
    cluster: &'a Cluster,
    name: &str,
    here: Option<&Node>,
) -> std::result::Result<&'a Node, String> {
    let nodes = cluster.nodes();
    let Some(node) = nodes.iter().find(|n| n.name.as_str() == name).copied() else {
        let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(format!(
            "--to-node {name:?}: no such node in the config (nodes: {})",
            known.join(", ")
        ));
    };
    if node.role != Role::Master {
        return Err(format!(
            "--to-node {name:?}: that node is a {}, not the master of the config; disaster recovery rebuilds the primary (rerunning the roles then re-clones the standbys)",
            node.role
        ));
    }
    match here {
        Some(h) if h.name == node.name => Ok(node),
        Some(h) => Err(format!(
            "--to-node {name:?} runs on {name} itself ({}), but this machine is {} ({})",
            node.address, h.name, h.address
        )),
        None => Err(format!(
            "--to-node {name:?} runs on {name} itself ({}); this machine is no node of the config",
            node.address
        )),
    }
}

/// Refuses while a PostgreSQL server owns `data`: the service is active, or postmaster.pid
/// names a live process.
///
/// Errors: [`Error::Refused`].
pub fn refuse_if_running(data: &Path, service_active: bool) -> Result<()> {
    if service_active {
        return Err(Error::Refused(format!(
            "PostgreSQL is running on {} (the service is active): stop it first; a running server is never overwritten",
            data.display()
        )));
    }
    let pidfile = data.join("postmaster.pid");
    let pid = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
    if let Some(pid) = pid {
        if Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Error::Refused(format!(
                "{} names the live process {pid}: a PostgreSQL server owns {}; stop it first",
                pidfile.display(),
                data.display()
            )));
        }
    }
    Ok(())
}

/// `DATA.pgnode-set-aside-EPOCH`, where an existing data directory goes.
pub fn set_aside_path(data: &Path, epoch: u64) -> PathBuf {
    PathBuf::from(format!("{}.pgnode-set-aside-{epoch}", data.display()))
}

/// A WAL segment or timeline history file name (what barman copied into pg_wal).
pub fn is_wal_file(name: &str) -> bool {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    (name.len() == 24 && hex(name))
        || name
            .strip_suffix(".history")
            .is_some_and(|h| h.len() == 8 && hex(h))
}

/// postgresql.auto.conf of the restored copy: Barman's recovery settings (archive_command
/// disabled, any restore_command or target) commented out, and a restore_command reading the
/// copied WAL directory added. Configuration otherwise lives in /etc on Debian.
pub fn fix_auto_conf(text: &str, wal_dir: &Path) -> String {
    let mut out: String = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            let barmans = key == "archive_command"
                || key == "restore_command"
                || key == "recovery_end_command"
                || key.starts_with("recovery_target");
            if !l.trim_start().starts_with('#') && barmans {
                format!("# pgnode restore --to-node: {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    out.push_str(&format!(
        "# pgnode restore --to-node: replay the WAL copied from Barman, then promote.\nrestore_command = 'cp {}/%f \"%p\"'\n",
        wal_dir.display()
    ));
    out
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh directory owned by postgres, 0700.
fn make_dir(p: &Path, ids: (u32, u32)) -> Result<()> {
    fs::DirBuilder::new().mode(0o700).create(p).map_err(io(p))?;
    std::os::unix::fs::chown(p, Some(ids.0), Some(ids.1)).map_err(io(p))
}

/// Moves the existing data directory aside (if any) and makes a fresh, empty one.
fn prepare(data: &Path, ids: (u32, u32), say: &mut dyn FnMut(String)) -> Result<()> {
    if fs::symlink_metadata(data).is_ok() {
        let aside = set_aside_path(data, epoch());
        fs::rename(data, &aside).map_err(io(data))?;
        say(format!(
            "moved the existing {} aside to {} (nothing deleted)",
            data.display(),
            aside.display()
        ));
    }
    make_dir(data, ids)
}

/// Moves the WAL files barman copied into pg_wal to `wal_dir`, for restore_command.
fn move_wal(data: &Path, wal_dir: &Path, ids: (u32, u32)) -> Result<usize> {
    make_dir(wal_dir, ids)?;
    let pg_wal = data.join("pg_wal");
    let mut n = 0;
    for e in fs::read_dir(&pg_wal).map_err(io(&pg_wal))? {
        let e = e.map_err(io(&pg_wal))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if is_wal_file(&name) {
            fs::rename(e.path(), wal_dir.join(&name)).map_err(io(&e.path()))?;
            n += 1;
        }
    }
    Ok(n)
}

fn psql(sql: &str) -> Cmd {
    Cmd::new("psql")
        .user("postgres")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
}

/// Runs the disaster recovery on this machine (the master of `ctx`). `say` gets progress.
///
/// Errors: [`Error::Refused`] while a server runs; the stream, the start or the bounded wait
/// failing (the data directory set aside stays where it was moved).
pub fn run(ctx: &Ctx, say: &mut dyn FnMut(String)) -> Result<Vec<String>> {
    let data = ctx.data_dir();
    let service = ctx.service();
    refuse_if_running(&data, system::service_active(&service)?)?;
    let ids = system::ids(Path::new("/"), "postgres", "postgres")?;
    prepare(&data, ids, say)?;
    let backup = ctx
        .cluster
        .with_role(Role::Backup)
        .first()
        .map(|n| n.address.to_string())
        .ok_or_else(|| Error::Refused("the config has no backup node".into()))?;
    let request = stream_request(&ctx.cluster.barman.server);
    say(format!(
        "streaming the newest backup with its WAL from barman@{backup} ({request:?}) into {}",
        data.display()
    ));
    Cmd::new("ssh")
        .user("postgres")
        .args([backup.as_str(), request.as_str()])
        .pipe(&Cmd::new("tar").user("postgres").args([
            "-C",
            &data.to_string_lossy(),
            "-xf",
            "-",
        ]))?;
    let wal_dir = PathBuf::from(format!("{}.pgnode-restore-wal", data.display()));
    if fs::symlink_metadata(&wal_dir).is_ok() {
        fs::rename(&wal_dir, set_aside_path(&wal_dir, epoch())).map_err(io(&wal_dir))?;
    }
    let n = move_wal(&data, &wal_dir, ids)?;
    say(format!(
        "{n} WAL files copied from Barman, in {}",
        wal_dir.display()
    ));
    finish_files(&data, &wal_dir, ids)?;
    system::systemctl("start", &service)?;
    say(format!(
        "started {service}; waiting for it to replay the WAL and promote"
    ));
    wait_promoted()?;
    // The primary needs no restore_command any more; the copied WAL is ours to remove.
    psql("ALTER SYSTEM RESET restore_command").run()?;
    psql("SELECT pg_reload_conf()").run()?;
    let _ = fs::remove_dir_all(&wal_dir);
    let out = psql(
        "SELECT 'timeline ' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)::text || ', end LSN ' || pg_current_wal_lsn()",
    )
    .run()?;
    Ok(vec![format!("promoted: {}", out.stdout.trim())])
}

/// recovery.signal and the fixed postgresql.auto.conf, owned by postgres.
fn finish_files(data: &Path, wal_dir: &Path, ids: (u32, u32)) -> Result<()> {
    let auto = data.join("postgresql.auto.conf");
    let text = fs::read_to_string(&auto).unwrap_or_default();
    let signal = data.join("recovery.signal");
    for (p, body) in [
        (auto.clone(), fix_auto_conf(&text, wal_dir)),
        (signal, String::new()),
    ] {
        fs::write(&p, body).map_err(io(&p))?;
        std::os::unix::fs::chown(&p, Some(ids.0), Some(ids.1)).map_err(io(&p))?;
    }
    let m = fs::metadata(data).map_err(io(data))?;
    if m.uid() != ids.0 {
        return Err(Error::Refused(format!(
            "{} is not owned by postgres after the restore",
            data.display()
        )));
    }
    Ok(())
}

fn wait_promoted() -> Result<()> {
    wait::until(
        "the restored primary to replay the WAL and promote",
        PROMOTE_TIMEOUT,
        Duration::from_secs(2),
        || {
            let out = psql("SELECT pg_is_in_recovery()").probe()?;
            if out.success() && out.stdout.trim() == "f" {
                return Ok(Ok(()));
            }
            Ok(Err(format!("{}{}", out.stdout.trim(), out.stderr.trim())))
        },
    )
}

#[cfg(test)]
#[path = "to_node_tests.rs"]
mod tests;
