//! `pgnode-e2e`: runs the end-to-end checks against a running cluster and prints the report.
//! Dispatch only: the checks, targets and runner live in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};

use pgnode_e2e::inventory::Ssh;
use pgnode_e2e::target::{GuestLayout, Lab, Target, Vagrant};
use pgnode_e2e::{checks, runner, Cluster};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetKind {
    /// The lab's systemd-nspawn guests (provision/lab exec), instance PGNODE_LAB_INSTANCE.
    Lab,
    /// Vagrant machines (vagrant ssh NODE -c 'sudo ...'), from the Vagrantfile's directory.
    Vagrant,
    /// Hosts of an Ansible inventory (ssh root@ADDR), as provision/ansible sets them up.
    Ssh,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Layout {
    Ansible,
    Vagrant,
}

/// pgnode's end-to-end checks against a running cluster. Ends with `N passed, N failed`; exit 0
/// only when every check passed, 2 on bad usage (an unknown check, an invalid config).
#[derive(Parser, Debug)]
#[command(name = "pgnode-e2e")]
struct Args {
    /// Where the nodes are.
    #[arg(long, value_enum, default_value = "lab")]
    target: TargetKind,
    /// The checkout (provision/lab, the Vagrantfile, config/cluster.json); default: the current directory.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The cluster config; default: REPO/config/cluster.json.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ansible inventory for --target ssh (groups named by role, hosts by address).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Network namespace to run ssh in (e.g. `provision/lab netns`), for --target ssh.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Where pgnode's files are on the nodes, for --target ssh: `ansible` (/etc/pgnode, the
    /// playbook's) or `vagrant` (/vagrant, the synced folder the lab mounts too).
    #[arg(long, value_enum, default_value = "ansible")]
    layout: Layout,
    /// Print the check names, in run order, one a line, and exit.
    #[arg(long)]
    list: bool,
    /// Turn the `fault-table:` lines of a saved report (LOG) into the README's markdown fault
    /// table, print it and exit.
    #[arg(long, value_name = "LOG")]
    fault_table: Option<PathBuf>,
    /// How many promotions `promotion-soak` runs in a row (switchovers and failovers alternating).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    soak_promotions: u16,
    /// Checks to run (default: all, in order).
    checks: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let all = checks::ALL;
    if args.list {
        for c in all {
            println!("{}", c.name);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(log) = &args.fault_table {
        return match std::fs::read_to_string(log) {
            Ok(text) => {
                print!("{}", pgnode_e2e::faults::table_from_log(&text));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pgnode-e2e: cannot read {}: {e}", log.display());
                ExitCode::from(2)
            }
        };
    }
    let selected = match runner::select(all, &args.checks) {
        Ok(s) => s,
        Err(unknown) => {
            let names: Vec<&str> = all.iter().map(|c| c.name).collect();
            eprintln!(
                "pgnode-e2e: unknown check {} ({})",
                unknown.join(" "),
                names.join(" ")
            );
            return ExitCode::from(2);
        }
    };
    let cluster = match setup(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgnode-e2e: {e}");
            return ExitCode::from(2);
        }
    };
    checks::set_soak_promotions(usize::from(args.soak_promotions));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match runner::run(&cluster, &selected, &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let _ = out.flush();
            eprintln!("pgnode-e2e: cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The target and the cluster, or a usage error.
fn setup(args: &Args) -> Result<Cluster, String> {
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?,
    };
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| repo.join("config/cluster.json"));
    let parsed = pgnode_core::config::Cluster::load(&config).map_err(|e| e.to_string())?;
    let target: Arc<dyn Target> = match args.target {
        TargetKind::Lab => {
            // The lab enters guests' namespaces: only root can.
            if !is_root() {
                return Err("--target lab must run as root (it enters the lab's guests)".into());
            }
            Arc::new(Lab::new(&repo))
        }
        TargetKind::Vagrant => Arc::new(Vagrant { dir: repo.clone() }),
        TargetKind::Ssh => {
            let inv = args
                .inventory
                .as_ref()
                .ok_or("--target ssh needs --inventory PATH")?;
            let mut ssh = Ssh::from_inventory(inv, &parsed, args.netns.clone())?;
            if let Layout::Vagrant = args.layout {
                ssh.layout = GuestLayout::vagrant();
            }
            Arc::new(ssh)
        }
    };
    Cluster::new(parsed, target)
}

/// Effective uid 0, read from /proc/self's owner (std has no geteuid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
