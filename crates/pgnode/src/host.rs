//! Which node this machine is: its host name and local addresses. A role only runs on the
//! machine that holds that node's address, so `pgnode --role slave` typed on the master by
//! mistake cannot set the master's data directory aside.

use pgnode_core::config::{Cluster, Node, Role};
use std::net::Ipv4Addr;

/// The IPv4 addresses assigned to this machine (from /proc/net/fib_trie: no tool needed).
pub fn local_addresses() -> Vec<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    parse_fib_trie(&text)
}

fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ").and_then(|a| a.parse().ok()) {
            last = Some(a);
        } else if t == "/32 host LOCAL" {
            if let Some(a) = last {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The node this machine is, from its host name or, failing that, its addresses.
pub fn detect_node(cluster: &Cluster) -> Option<&Node> {
    let name = hostname();
    let short = name.split('.').next().unwrap_or("");
    let addrs = local_addresses();
    let nodes = cluster.nodes();
    nodes
        .iter()
        .find(|n| n.name.as_str() == short)
        .or_else(|| nodes.iter().find(|n| addrs.contains(&n.address)))
        .copied()
}

/// The node of `role` whose address this machine holds, or else the first of that role.
pub fn local_of_role(cluster: &Cluster, role: Role) -> Option<&Node> {
    let addrs = local_addresses();
    let of_role = cluster.with_role(role);
    of_role
        .iter()
        .find(|n| addrs.contains(&n.address))
        .or(of_role.first())
        .copied()
}

/// The node of `role` this machine is: the one named `--node`, else the one whose address
/// this machine holds. A role only runs on the machine that holds its node's address, so
/// `pgnode --role slave` typed on the master by mistake cannot set the master's data
/// directory aside. A dry run only warns (it changes nothing) and, when the role has one
/// node, plans for it.
pub fn resolve<'c>(
    cluster: &'c Cluster,
    role: Role,
    name: Option<&str>,
    dry_run: bool,
) -> Result<&'c Node, String> {
    let addrs = local_addresses();
    pick(cluster, role, name, &addrs, dry_run)
}

fn pick<'c>(
    cluster: &'c Cluster,
    role: Role,
    name: Option<&str>,
    addrs: &[Ipv4Addr],
    dry_run: bool,
) -> Result<&'c Node, String> {
    let of_role = cluster.with_role(role);
    let node = match name {
        Some(n) => match cluster.named(n) {
            Some(node) if node.role == role => node,
            Some(node) => {
                return Err(format!(
                    "node {n} has role {} in the config, not {role}",
                    node.role
                ))
            }
            None => return Err(format!("the config has no node named {n:?}")),
        },
        None => match of_role.iter().find(|n| addrs.contains(&n.address)) {
            Some(n) => n,
            // One node of the role: the address check below names it.
            None if of_role.len() == 1 => of_role[0],
            None => {
                let names: Vec<String> = of_role
                    .iter()
                    .map(|n| format!("{} ({})", n.name, n.address))
                    .collect();
                return Err(format!(
                    "this machine has none of the addresses of the {role} nodes {} (its addresses: {}); refusing to run role {role} here{}",
                    names.join(", "),
                    show(addrs),
                    if dry_run { " (a dry run elsewhere needs --node NAME)" } else { "" }
                ));
            }
        },
    };
    if addrs.contains(&node.address) {
        return Ok(node);
    }
    let msg = format!(
        "this machine does not have address {} of node {} (its addresses: {}); refusing to run role {role} here",
        node.address,
        node.name,
        show(addrs)
    );
    if dry_run {
        eprintln!("pgnode: warning: {msg} (dry run: continuing, nothing changes)");
        return Ok(node);
    }
    Err(msg)
}

/// The effective uid of this process (from /proc/self/status: no libc needed).
pub fn effective_uid() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_uid(&text)
}

fn parse_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A converge installs packages, writes /etc and runs commands as postgres and barman: refuse
/// it up front as another user rather than fail half-way through.
pub fn must_be_root() -> Result<(), String> {
    match effective_uid() {
        Some(0) => Ok(()),
        Some(uid) => Err(format!(
            "must run as root (running as uid {uid}): a role installs packages, writes /etc and runs commands as postgres and barman; use sudo, or --dry-run to see the plan"
        )),
        None => Err("cannot read /proc/self/status to tell whether this runs as root".into()),
    }
}

fn show(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the run lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another pgnode run holds it: a refusal (exit 2), nothing was touched.
    Held(String),
    /// The lock file could not be opened or locked at all (exit 1).
    Io(String),
}

/// Takes the node-wide run lock (released when the file is dropped, or when the process dies)
/// and writes this process's PID into it, so a refused second run can name the first.
///
/// Errors: [`LockError::Held`] naming the holder's PID, or [`LockError::Io`].
pub fn lock(path: &std::path::Path) -> Result<std::fs::File, LockError> {
    use std::io::Write;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| LockError::Io(format!("cannot open the run lock {}: {e}", path.display())))?;
    match f.try_lock() {
        Ok(()) => {
            // Only the holder writes, so the PID a refused run reads is the holder's.
            let _ = f.set_len(0);
            let _ = (&f).write_all(format!("{}\n", std::process::id()).as_bytes());
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (PID {pid})"),
            };
            Err(LockError::Held(format!(
                "another pgnode run{holder} is converging this machine (it holds {}): refusing to run at the same time; wait for it to finish, then run again",
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let p = std::env::temp_dir().join(format!("pgnode-lock-{}", std::process::id()));
        let first = lock(&p).unwrap();
        match lock(&p).unwrap_err() {
            LockError::Held(m) => {
                let me = format!(
                    "another pgnode run (PID {}) is converging",
                    std::process::id()
                );
                assert!(m.contains(&me), "{m}");
            }
            LockError::Io(m) => panic!("not a refusal: {m}"),
        }
        drop(first);
        assert!(lock(&p).is_ok());
        std::fs::remove_file(p).unwrap();
    }

    const TWO: &str = include_str!("../../core/tests/two-standbys.json");

    #[test]
    fn the_node_of_a_role_is_the_one_holding_a_local_address() {
        let c = Cluster::parse(TWO, "t").unwrap();
        let here = [Ipv4Addr::new(192, 168, 11, 104)];
        let n = pick(&c, Role::Slave, None, &here, false).unwrap();
        assert_eq!(n.name.as_str(), "slave2");
        let e = pick(&c, Role::Master, None, &here, false).unwrap_err();
        assert!(e.contains("refusing to run role master here"), "{e}");
        let e = pick(&c, Role::Slave, Some("slave"), &here, false).unwrap_err();
        assert!(
            e.contains("does not have address 192.168.11.102 of node slave"),
            "{e}"
        );
        assert!(pick(&c, Role::Slave, Some("slave"), &here, true).is_ok());
        let e = pick(&c, Role::Slave, Some("master"), &here, true).unwrap_err();
        assert!(e.contains("node master has role master"), "{e}");
        // A dry run elsewhere: one master is unambiguous, two slaves are not.
        assert!(pick(&c, Role::Master, None, &[], true).is_ok());
        let e = pick(&c, Role::Slave, None, &[], true).unwrap_err();
        assert!(e.contains("--node NAME"), "{e}");
    }

    #[test]
    fn reads_the_effective_uid() {
        assert_eq!(parse_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(0));
        assert!(effective_uid().is_some());
    }

    #[test]
    fn reads_local_addresses_from_fib_trie() {
        let t = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 192.168.11.0/24 2 0 2\n        |-- 192.168.11.0\n           /24 link UNICAST\n        |-- 192.168.11.102\n           /32 host LOCAL\n        |-- 192.168.11.255\n           /32 link BROADCAST\nLocal:\n        |-- 192.168.11.102\n           /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(t),
            vec![
                Ipv4Addr::new(192, 168, 11, 102),
                Ipv4Addr::new(127, 0, 0, 1)
            ]
        );
    }
}
