//! `pgnode restore`: flags, the checks that it runs as root on the backup node, printing and
//! exit codes. The work is in `pgnode_backup::restore`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use pgnode_backup::restore::{self, Flags};
use pgnode_core::config::{Cluster, Role};
use pgnode_core::step::chain;
use pgnode_core::Ctx;

use crate::host;

/// Flags of `pgnode restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// Replay every archived WAL file (then the copy promotes).
    #[arg(long)]
    latest: bool,
    /// Stop before the first commit after this time: 'YYYY-MM-DD HH:MM:SS[.ffffff]' with a
    /// time zone (Z, UTC, +HH, +HH:MM).
    #[arg(long, value_name = "TIME")]
    target_time: Option<String>,
    /// Stop at this WAL position (X/Y, hex).
    #[arg(long, value_name = "LSN")]
    target_lsn: Option<String>,
    /// Stop at this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    target_name: Option<String>,
    /// Start from this Barman backup id (default: the newest DONE one that suits the target).
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// Leave the restored server running and print how to connect and how to remove it.
    #[arg(long)]
    keep: bool,
    /// Stop and remove a restored server kept with --keep (or left by a killed run).
    #[arg(long, conflicts_with_all = ["latest", "target_time", "target_lsn", "target_name", "backup", "keep"])]
    discard: bool,
    /// The restore drill (what the schedule runs): restore the newest backup to a fresh
    /// restore point, check the copy, record the result for `pgnode status`.
    #[arg(long, conflicts_with_all = ["latest", "target_time", "target_lsn", "target_name", "backup", "keep", "discard"])]
    drill: bool,
    /// Disaster recovery, run ON that node (the master of the config): rebuild its data
    /// directory from the newest backup and every archived WAL file, pulled from Barman through
    /// the archive key's forced command; the existing directory is moved aside.
    #[arg(long, value_name = "NODE", conflicts_with_all = ["latest", "target_time", "target_lsn", "target_name", "backup", "keep", "discard", "drill"])]
    to_node: Option<String>,
}

/// Runs `pgnode restore`: 0 restored, 1 it failed, 2 bad usage.
pub fn run(cluster: Cluster, config: &Path, a: RestoreArgs) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("pgnode restore: {msg}");
        ExitCode::from(2)
    };
    if let Some(name) = a.to_node {
        return to_node(cluster, config, &name);
    }
    let flags = Flags {
        latest: a.latest,
        target_time: a.target_time,
        target_lsn: a.target_lsn,
        target_name: a.target_name,
        backup: a.backup,
        keep: a.keep,
    };
    let req = if a.discard || a.drill {
        None
    } else {
        match restore::args::request(&flags) {
            Ok(r) => Some(r),
            Err(msg) => return usage(msg),
        }
    };
    let node = match host::resolve(&cluster, Role::Backup, None, false) {
        Ok(n) => n.clone(),
        Err(msg) => return usage(format!("{msg} (restores run on the backup node)")),
    };
    if !is_root() {
        return usage(
            "must run as root (it runs barman and the restored server as user barman)".into(),
        );
    }
    let ctx = match Ctx::new(cluster, node, Path::new("/"), config, false) {
        Ok(c) => c,
        Err(e) => return usage(chain(&e)),
    };
    let root = Path::new(restore::SANDBOX);
    if a.drill {
        return drill(&ctx, root);
    }
    let result = match req {
        None => restore::discard(root).map(|done| {
            for l in &done {
                println!("{l}");
            }
            if done.is_empty() {
                println!("nothing to discard in {}", root.display());
            }
        }),
        Some(req) => restore::run(&ctx, root, &req, &mut |l| println!("  {l}"))
            .map(|o| print!("{}", restore::report(&o, root))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgnode restore: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// `--to-node NAME`: exit 2 unless NAME is the master of the config and this machine is it.
fn to_node(cluster: Cluster, config: &Path, name: &str) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("pgnode restore: {msg}");
        ExitCode::from(2)
    };
    let node = match restore::to_node::validate(&cluster, name, host::detect_node(&cluster)) {
        Ok(n) => n.clone(),
        Err(msg) => return usage(msg),
    };
    if !is_root() {
        return usage("--to-node must run as root (it stops nothing, but writes the data directory as postgres and starts the service)".into());
    }
    let ctx = match Ctx::new(cluster, node, Path::new("/"), config, false) {
        Ok(c) => c,
        Err(e) => return usage(chain(&e)),
    };
    match restore::to_node::run(&ctx, &mut |l| println!("  {l}")) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            println!("now rerun the roles: master, then the slaves, then backup (they re-clone the standbys and let Barman follow the new timeline)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgnode restore: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// Whether this process runs with effective uid 0 (from /proc: no libc dependency).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

fn drill(ctx: &Ctx, root: &Path) -> ExitCode {
    let state = Path::new(restore::state::STATE);
    let s = restore::drill::drill(ctx, root, state, &mut |l| println!("  {l}"));
    for c in &s.checks {
        println!(
            "{:>8}  {}: {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        );
    }
    if let Some(k) = &s.kept_backup {
        println!("kept backup {k} (barman keep: the last backup that passed a drill)");
    }
    println!(
        "restore drill {} in {:.1}s (backup {}, restore point {}); recorded in {}",
        if s.ok { "OK" } else { "FAILED" },
        s.seconds,
        if s.backup.is_empty() {
            "none"
        } else {
            &s.backup
        },
        s.restore_point,
        state.display()
    );
    if s.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
