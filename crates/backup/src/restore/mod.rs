//! `pgnode restore` on the backup node: `barman recover` into the sandbox, a throwaway server
//! on it (server binaries installed on demand, no `main` cluster), a bounded wait until
//! recovery reaches its target and the server promotes, a report of what came back, then the
//! server is stopped and the copy removed unless `--keep`.

use std::path::Path;
use std::time::Instant;

use pgnode_core::files::{self, FileSpec};
use pgnode_core::{system, Ctx, Error, Result};

use crate::barman::{backups, barman, Backup};

pub mod args;
pub mod drill;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod to_node;

pub use args::{Flags, Request, Target};
pub use sandbox::Sandbox;
pub use sandbox::SANDBOX;
use server::Found;

/// What a restore found, for the report and the drill's state file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub backup: String,
    pub backup_end: String,
    pub target: String,
    pub found: Found,
    pub recover_seconds: f64,
    pub replay_seconds: f64,
    pub total_seconds: f64,
    pub kept: bool,
}

/// How a target reads in the report.
pub fn describe(t: &Target) -> String {
    match t {
        Target::Latest => "latest (every archived WAL file)".into(),
        Target::Time { text, .. } => format!("time {text}"),
        Target::Lsn { text, .. } => format!("LSN {text}"),
        Target::Name(n) => format!("restore point {n:?}"),
    }
}

fn target_args(t: &Target) -> Vec<String> {
    let (flag, value) = match t {
        Target::Latest => return Vec::new(),
        Target::Time { text, .. } => ("--target-time", text.clone()),
        Target::Lsn { text, .. } => ("--target-lsn", text.clone()),
        Target::Name(n) => ("--target-name", n.clone()),
    };
    // Promote at the target: the default (pause) would leave the copy in recovery forever.
    vec![
        flag.into(),
        value,
        "--target-action".into(),
        "promote".into(),
    ]
}

fn barman_ids() -> Result<(u32, u32)> {
    system::ids(Path::new("/"), "barman", "barman")
}

/// Opens the sandbox, refuses a kept server and cleans a killed run's leftovers.
fn open_clean(root: &Path, say: &mut dyn FnMut(String)) -> Result<Sandbox> {
    let sb = Sandbox::open(root, Some(barman_ids()?))?;
    sb.refuse_if_kept()?;
    for line in sb.clean()? {
        say(format!("left over by an earlier run: {line}"));
    }
    Ok(sb)
}

/// The server binaries of `major`, from the same archive as everything else, without the
/// `main` cluster postgresql-common would otherwise create and start on the backup node.
fn server_binaries(major: &str, say: &mut dyn FnMut(String)) -> Result<()> {
    let pkg = format!("postgresql-{major}");
    if system::missing_packages(std::slice::from_ref(&pkg))?.is_empty() {
        return Ok(());
    }
    files::write(
        Path::new("/"),
        &FileSpec::new(
            "/etc/postgresql-common/createcluster.d/pgnode-no-main-cluster.conf",
            "# Managed by pgnode: the backup node runs PostgreSQL only for restores, on their own\n# sandbox; no `main` cluster.\ncreate_main_cluster = false\n",
            "root",
            0o644,
        ),
        true,
    )?;
    say(format!(
        "installing {pkg} (server binaries for the restored copy; no main cluster)"
    ));
    system::apt_install(&[pkg])
}

/// Recovers into the sandbox and brings the copy up; returns its major and the seconds the
/// recover and the replay took.
fn recover_and_start(
    ctx: &Ctx,
    sb: &Sandbox,
    req: &Request,
    b: &Backup,
    say: &mut dyn FnMut(String),
) -> Result<(String, f64, f64)> {
    let t0 = Instant::now();
    let data = sb.data().to_string_lossy().into_owned();
    let server = ctx.cluster.barman.server.as_str();
    // --get-wal: replay fetches WAL from the archive on demand (server::restore_command says
    // why Barman's own copy does not do across a timeline switch).
    let mut argv: Vec<String> = vec!["recover".into(), "--get-wal".into()];
    argv.extend(target_args(&req.target));
    argv.extend([server.to_string(), b.id.clone(), data.clone()]);
    barman(&argv.iter().map(String::as_str).collect::<Vec<_>>()).run()?;
    let recover = t0.elapsed().as_secs_f64();
    say(format!(
        "barman recover {} into {data} ({recover:.1}s)",
        b.id
    ));
    let major = std::fs::read_to_string(sb.data().join("PG_VERSION"))
        .map_err(|source| Error::Read {
            path: sb.data().join("PG_VERSION"),
            source,
        })?
        .trim()
        .to_string();
    server_binaries(&major, say)?;
    let made = sandbox::add_missing_pg_dirs(&sb.data())?;
    if !made.is_empty() {
        say(format!(
            "added the empty directories the copy lacked: {}",
            made.join(", ")
        ));
    }
    for f in server::conf_files(sb, server) {
        files::write(Path::new("/"), &f, true)?;
    }
    let auto = sb.data().join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).unwrap_or_default();
    let spec = FileSpec::new(
        &auto,
        server::strip_auto_conf(&text, &sb.sock(), server),
        "barman",
        0o600,
    );
    files::write(Path::new("/"), &spec, true)?;
    sb.make_sock()?;
    let t1 = Instant::now();
    server::start(sb, &major)?;
    say(format!(
        "PostgreSQL {major} started on the copy; waiting for recovery to reach the target"
    ));
    server::wait_promoted(sb, server::RECOVERY_TIMEOUT)?;
    Ok((major, recover, t1.elapsed().as_secs_f64()))
}

/// Runs a restore into the sandbox at `root` ([`SANDBOX`] on a node). `say` gets progress
/// lines.
///
/// Errors: [`Error::Refused`] (no usable backup, a kept server, another run), Barman's or the
/// server's failure (with the server log's tail); the sandbox is cleaned on failure.
pub fn run(ctx: &Ctx, root: &Path, req: &Request, say: &mut dyn FnMut(String)) -> Result<Outcome> {
    run_then(ctx, root, req, say, &mut |_, _| Ok(()))
}

/// [`run`], calling `then` on the promoted copy (the drill's checks) before it is stopped.
///
/// Errors: as [`run`], and `then`'s error.
pub fn run_then(
    ctx: &Ctx,
    root: &Path,
    req: &Request,
    say: &mut dyn FnMut(String),
    then: &mut dyn FnMut(&Sandbox, &Outcome) -> Result<()>,
) -> Result<Outcome> {
    let start = Instant::now();
    let sb = open_clean(root, say)?;
    let b = args::choose_backup(req, &backups(ctx)?).map_err(Error::Refused)?;
    say(format!(
        "restoring backup {} (ended {}) to {}",
        b.id,
        b.end_time,
        describe(&req.target)
    ));
    let result = recover_and_start(ctx, &sb, req, &b, say)
        .and_then(|(major, rec, replay)| Ok((major, rec, replay, server::inspect(&sb)?)));
    let (major, recover_seconds, replay_seconds, found) = match result {
        Ok(r) => r,
        Err(e) => {
            // Keep the log (it is in the error and in the sandbox), drop the copy.
            let _ = sb.clean();
            return Err(e);
        }
    };
    let out = Outcome {
        backup: b.id.clone(),
        backup_end: b.end_time.clone(),
        target: describe(&req.target),
        found,
        recover_seconds,
        replay_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        kept: req.keep,
    };
    let checked = then(&sb, &out);
    if checked.is_err() && !req.keep {
        let _ = server::stop(&sb, &major);
        let _ = sb.clean();
    }
    checked?;
    if req.keep {
        sb.mark_kept(&format!(
            "PostgreSQL {major}, socket {}, port {}",
            sb.sock().display(),
            server::PORT
        ))?;
    } else {
        server::stop(&sb, &major)?;
        sb.clean()?;
    }
    Ok(out)
}

/// The report of a restore, for people.
pub fn report(o: &Outcome, root: &Path) -> String {
    let dbs = o
        .found
        .databases
        .iter()
        .map(|(n, s)| format!("{n} {}", server::human(*s)))
        .collect::<Vec<_>>()
        .join(", ");
    // pg_last_xact_replay_timestamp() is NULL when replay met no commit: the backup itself
    // already held every transaction up to the target.
    let ended = if o.found.end_time == "none" {
        "no transaction to replay after the backup (the backup holds everything up to the target)"
            .to_string()
    } else {
        format!(
            "last replayed transaction committed at {}",
            o.found.end_time
        )
    };
    let mut s = format!(
        "restored:\n  backup           {} (ended {})\n  target           {}\n  recovery ended   {ended}\n  end LSN          {}\n  timeline         {}\n  server           PostgreSQL {}\n  databases        {dbs}\n  durations        recover {:.1}s, replay {:.1}s, total {:.1}s\n",
        o.backup, o.backup_end, o.target, o.found.end_lsn, o.found.timeline,
        o.found.server_version, o.recover_seconds, o.replay_seconds, o.total_seconds
    );
    let sock = root.join("sock");
    if o.kept {
        s.push_str(&format!(
            "kept running (--keep). Connect:\n  runuser -u barman -- psql -h {} -p {} -U postgres postgres\nRemove it when done:\n  pgnode restore --discard\n",
            sock.display(),
            server::PORT
        ));
    } else {
        s.push_str(&format!(
            "stopped; {} removed\n",
            root.join("data").display()
        ));
    }
    s
}

/// Stops and removes a kept (or leftover) restored server.
///
/// Errors: another run holds the sandbox, or the stop/removal failed.
pub fn discard(root: &Path) -> Result<Vec<String>> {
    let sb = Sandbox::open(root, Some(barman_ids()?))?;
    sb.clean()
}
