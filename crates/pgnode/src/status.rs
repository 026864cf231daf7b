//! `pgnode status`: which node this is, its facts gathered once by its role, printed as a
//! table, as JSON, or written as Prometheus metrics; and the exit code. The gathering is in the
//! role crates, the metrics' names and rendering in `pgnode_core::metrics`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use pgnode_core::config::{Cluster, Role};
use pgnode_core::status::NodeStatus;
use pgnode_core::step::chain;
use pgnode_core::{metrics, Ctx};

use crate::host;

/// Flags of `pgnode status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the facts as Prometheus metrics (text format 0.0.4) to FILE instead, atomically
    /// (`-`: standard output). Exit 0 whenever it was written: health is in the metrics.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    prometheus: Option<PathBuf>,
    /// The role to report on (default: found from the host name or local addresses).
    #[arg(long, value_parser = crate::parse_role)]
    role: Option<Role>,
}

/// Runs `pgnode status`: exit 0 healthy, 1 not (with `--prometheus`: 0 written, 1 not), 2 when
/// the node cannot be told or its context not made.
pub fn run(cluster: Cluster, name: Option<&str>, config: &Path, a: StatusArgs) -> ExitCode {
    let node = match (name, a.role) {
        (Some(n), _) => cluster.named(n),
        (None, Some(r)) => host::local_of_role(&cluster, r),
        (None, None) => host::detect_node(&cluster),
    };
    let Some(node) = node.cloned() else {
        eprintln!("pgnode: cannot tell which node this is (no host name or local address matches the config): pass --node NAME or --role");
        return ExitCode::from(2);
    };
    let role = node.role;
    let ctx = match Ctx::new(cluster, node, Path::new("/"), config, false) {
        Ok(c) => c,
        Err(e) => return crate::usage_error(&e),
    };
    let mut s = match role {
        Role::Master => pgnode_master::status::status(&ctx),
        Role::Slave => pgnode_slave::status::status(&ctx),
        Role::Backup => pgnode_backup::status::status(&ctx),
    };
    s.connect = ctx.cluster.client_connect(pgnode_core::tls::CA_FILE);
    if let Some(file) = &a.prometheus {
        return write_metrics(&ctx, &s, file);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        print!("{}", s.table());
    }
    if s.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Writes the metrics to `file` (or standard output for `-`); silent when it worked, since a
/// timer runs it every 30 s. A certificate that could not be read is named on stderr.
fn write_metrics(ctx: &Ctx, s: &NodeStatus, file: &Path) -> ExitCode {
    let (text, problems) = metrics::exposition(ctx, s);
    for p in problems {
        eprintln!("pgnode: warning: {p}");
    }
    let written = if file == Path::new("-") {
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the metrics to standard output: {e}"))
    } else {
        metrics::write(file, &text).map_err(|e| chain(&e))
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("pgnode: {msg}");
            ExitCode::from(1)
        }
    }
}
