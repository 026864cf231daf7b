//! The `pgnode` binary: argument parsing, dispatch, printing the report and exit codes.
//! Exit 0: converged (or healthy); 1: a step failed (or unhealthy); 2: bad usage or config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgnode_core::config::{Cluster, Node, Role};
use pgnode_core::step::{chain, Entry, Outcome, Runner};
use pgnode_core::templates::Templates;
use pgnode_core::{secrets, Ctx, Error};

#[cfg(test)]
mod docs_tests;
mod host;
mod restore;
mod status;

const DEFAULT_CONFIG: &str = "/vagrant/config/cluster.json";

/// The end of `pgnode --help`: examples, and the exit codes every command shares (listed here
/// once; docs/cli.md has the same list).
const ROOT_AFTER_HELP: &str = "\
Examples:
  sudo pgnode --role master              converge this machine as the primary
  sudo pgnode --role slave --dry-run     show what would change (with diffs), change nothing
  sudo pgnode status                     is this node healthy? (exit 1 when not)
  pgnode config --config config/cluster.json    the validated config with its defaults

Exit codes (every command):
  0  converged; healthy; done
  1  a step failed (the message names the step, the command and its stderr), the node is
     not healthy, or a restore or drill failed
  2  bad usage, an invalid config or secrets file, the wrong machine for the role, not root,
     or another pgnode run holds /run/pgnode.lock: nothing was changed

A role only runs on the machine that holds its node's address. Guides: docs/operations.md;
every flag, key and variable: docs/cli.md and docs/configuration.md (in the source tree).";

const STATUS_AFTER_HELP: &str = "\
Examples:
  sudo pgnode status                     the table; exit 0 healthy, 1 not
  sudo pgnode status --json              the same as JSON, for scripts and monitoring
  sudo pgnode status --prometheus /var/lib/prometheus/node-exporter/pgnode.prom
                                         metrics for node_exporter's textfile collector
  sudo pgnode status --node slave2       when neither host name nor address tells which node";

const SECRETS_AFTER_HELP: &str = "\
Examples:
  pgnode secrets --config config/cluster.json       creates config/secrets.json (0600) if missing
  pgnode secrets --config config/cluster.json --rotate-tls   new CA and certificates
Run it once where the config lives (Vagrant and Ansible do it on the host) so that every node
gets the same file; it never prints a secret.";

const CONFIG_AFTER_HELP: &str = "\
Example:
  pgnode config --config config/cluster.json | python3 -m json.tool
Exit 2 and every problem, each naming its field, when the config is invalid.";

const RESTORE_AFTER_HELP: &str = "\
Examples (as root on the backup node, unless --to-node):
  pgnode restore --latest                            restore, report, remove the copy
  pgnode restore --target-time '2026-11-26 11:38:05+00' --keep   then connect, see the output
  pgnode restore --discard                           stop and remove a copy kept with --keep
  pgnode restore --drill                             what the schedule runs
  pgnode restore --to-node master                    ON the master, PostgreSQL stopped: disaster
                                                     recovery of its data directory from Barman
Exactly one of --latest, --target-time, --target-lsn, --target-name (or --discard, --drill,
--to-node). Nothing outside the sandbox /var/lib/barman/pgnode-restore is touched, except
by --to-node, which moves the old data directory aside (never deletes it).";

#[derive(Parser)]
#[command(
    name = "pgnode",
    version,
    about = "Converge this machine into its role of a PostgreSQL cluster: master (primary), slave (hot standby) or backup (Barman).",
    args_conflicts_with_subcommands = true,
    after_help = ROOT_AFTER_HELP
)]
struct Cli {
    /// Converge this machine as this role: master|slave|backup (aliases: primary, standby).
    /// Rerunning is safe: a converged node reports changed=0.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// The cluster config (secrets.json beside it holds generated passwords and keys).
    #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    /// Check every step and show what would change (with diffs) without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Which node of the config this machine is (default: the one whose address it holds).
    #[arg(long, global = true)]
    node: Option<String>,
    /// Slave only: clone the master again (after its slot was invalidated); the current data
    /// directory is set aside beside it, not deleted.
    #[arg(long)]
    reclone: bool,
    /// Master only, for a failover: promote this standby although the old primary is gone and
    /// cannot prove that it lost nothing (prints how far behind this standby was). Still
    /// refused while the old primary answers as a primary.
    #[arg(long)]
    force_promote: bool,
    /// Take every node path under this directory (planning into a scratch root).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show what this node is and whether it is healthy (exit 1 when not).
    #[command(after_help = STATUS_AFTER_HELP)]
    Status(status::StatusArgs),
    /// Create the secrets file beside the config if it does not exist, or add what it lacks
    /// (never prints secrets).
    #[command(after_help = SECRETS_AFTER_HELP)]
    Secrets {
        /// Replace the cluster CA and every node's TLS certificate, then rerun every role
        /// (master first) to install them.
        #[arg(long)]
        rotate_tls: bool,
    },
    /// Print the validated config as JSON: defaults filled in, nodes in provisioning order
    /// (what the lab, the Vagrantfile and the Ansible wrapper read). Exit 2 when invalid.
    #[command(after_help = CONFIG_AFTER_HELP)]
    Config,
    /// Backup node: restore a backup into a sandbox, start a throwaway server on it, report;
    /// also the restore drill, and disaster recovery of the master (--to-node).
    #[command(after_help = RESTORE_AFTER_HELP)]
    Restore(restore::RestoreArgs),
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!("unknown role {s:?}: expected master, slave or backup (aliases primary, standby)")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cluster = match Cluster::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Some(Command::Status(a)) => status::run(cluster, cli.node.as_deref(), &cli.config, a),
        Some(Command::Secrets { rotate_tls }) => make_secrets(&cluster, &cli.config, rotate_tls),
        Some(Command::Config) => print_config(&cluster),
        Some(Command::Restore(a)) => restore::run(cluster, &cli.config, a),
        None => match cli.role {
            Some(role) => converge(cluster, role, &cli),
            None => {
                eprintln!("pgnode: say which role this machine plays: --role master|slave|backup (or run `pgnode status`)");
                ExitCode::from(2)
            }
        },
    }
}

/// Everything that makes a run bad input, checked before the first step so that a refused run
/// changes nothing: the flags, root (a real converge only: a dry run or a scratch root needs
/// none), the machine's address, and a secrets file that exists but is unusable (pgnode
/// refuses it rather than repairing it: a wrong mode may mean it was copied somewhere).
fn preflight(cluster: &Cluster, role: Role, cli: &Cli) -> Result<Node, String> {
    if cli.reclone && role != Role::Slave {
        return Err("--reclone is for the slave role only".into());
    }
    if !cli.dry_run && cli.root == Path::new("/") {
        host::must_be_root()?;
    }
    let node = host::resolve(cluster, role, cli.node.as_deref(), cli.dry_run)?.clone();
    // A damaged secrets file is refused before anything changes; passwords a newer pgnode
    // added (the monitoring ones) are generated by the run.
    secrets::load_any(
        &secrets::path_for(&cli.config),
        &cluster.secret_names(),
        &cluster.later_secret_names(),
    )
    .map_err(|e| chain(&e))?;
    Ok(node)
}

fn usage_error(e: &Error) -> ExitCode {
    eprintln!("pgnode: {}", chain(e));
    ExitCode::from(2)
}

fn converge(cluster: Cluster, role: Role, cli: &Cli) -> ExitCode {
    let node = match preflight(&cluster, role, cli) {
        Ok(n) => n,
        Err(msg) => {
            eprintln!("pgnode: {msg}");
            return ExitCode::from(2);
        }
    };
    let mut ctx = match Ctx::new(cluster, node, &cli.root, &cli.config, cli.dry_run) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    if cli.force_promote && role != Role::Master {
        eprintln!("pgnode: --force-promote is for the master role only");
        return ExitCode::from(2);
    }
    ctx.reclone = cli.reclone;
    ctx.force_promote = cli.force_promote;
    // Two runs on one node (a manual rerun during `vagrant provision`) would race on the same
    // files and services: the second one stops here, before checking anything.
    let _lock = if cli.dry_run {
        None
    } else {
        match host::lock(&ctx.path(Path::new("/run/pgnode.lock"))) {
            Ok(f) => Some(f),
            // A second run is refused like bad usage (exit 2): nothing was checked or touched.
            Err(host::LockError::Held(msg)) => {
                eprintln!("pgnode: {msg}");
                return ExitCode::from(2);
            }
            Err(host::LockError::Io(msg)) => {
                eprintln!("pgnode: {msg}");
                return ExitCode::from(1);
            }
        }
    };
    let node = ctx.node();
    println!(
        "pgnode {}: converging {} as {role} ({}), PostgreSQL {}{}",
        env!("CARGO_PKG_VERSION"),
        node.name,
        node.address,
        ctx.major,
        if cli.dry_run { " [dry run]" } else { "" }
    );
    let mut runner = Runner::new(cli.dry_run, print_entry);
    let prepare = match role {
        Role::Master => pgnode_master::prepare(&ctx),
        Role::Slave => pgnode_slave::prepare(&ctx),
        Role::Backup => pgnode_backup::prepare(&ctx),
    };
    if runner.run(prepare) {
        let templates = Templates::new();
        let steps = match role {
            Role::Master => pgnode_master::converge(&ctx, &templates),
            Role::Slave => pgnode_slave::converge(&ctx, &templates),
            Role::Backup => pgnode_backup::converge(&ctx, &templates),
        };
        match steps {
            Ok(steps) => {
                runner.run(steps);
            }
            Err(e) => {
                let entry = Entry {
                    step: "render configuration".into(),
                    outcome: Outcome::Failed(chain(&e)),
                    seconds: 0.0,
                };
                print_entry(&entry);
                runner.report.entries.push(entry);
            }
        }
    }
    println!("{}", runner.recap(role.as_str()));
    if runner.report.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_entry(e: &Entry) {
    let (tag, detail) = match &e.outcome {
        Outcome::Ok => ("ok", None),
        Outcome::Waited(w) => ("ok", Some(format!("(waited: {w})"))),
        Outcome::Changed(w) => ("changed", Some(w.clone())),
        Outcome::WouldChange(w) => ("would change", Some(w.clone())),
        Outcome::Unknown(w) => ("unknown", Some(w.clone())),
        Outcome::Failed(w) => ("FAILED", Some(w.clone())),
    };
    let mut detail = detail.unwrap_or_default();
    if let Some((first, rest)) = detail.clone().split_once('\n') {
        detail = format!(
            "{first}\n{}",
            rest.lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let sep = if detail.is_empty() { "" } else { ": " };
    println!("{tag:>12}  {}{sep}{detail}  [{:.1}s]", e.step, e.seconds);
}

fn print_config(cluster: &Cluster) -> ExitCode {
    match serde_json::to_string_pretty(&cluster.normalized()) {
        Ok(text) => {
            // A reader that stops early (`| head`) is not an error worth a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgnode: cannot print the config: {e}");
            ExitCode::from(1)
        }
    }
}

fn make_secrets(cluster: &Cluster, config: &Path, rotate_tls: bool) -> ExitCode {
    let users: Vec<&str> = cluster.secret_names();
    let later: Vec<&str> = cluster.later_secret_names();
    let path = secrets::path_for(config);
    let nodes = secrets::tls_nodes(cluster);
    let result = if rotate_tls {
        secrets::replace_tls(&path, &users, &later, &nodes, true)
    } else {
        secrets::load_or_create(&path, &users, &later, &nodes)
    };
    match result {
        Ok((_, changed)) => {
            let what = match (rotate_tls, changed) {
                (true, _) => {
                    "TLS CA and node certificates replaced: rerun every role, master first"
                }
                (false, true) => "created or completed",
                (false, false) => "already present",
            };
            println!("secrets: {} ({what})", path.display());
            ExitCode::SUCCESS
        }
        // An unusable existing file is bad input (exit 2); a failing ssh-keygen is not.
        Err(e @ Error::Secrets { .. }) => usage_error(&e),
        Err(e) => {
            eprintln!("pgnode: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}
