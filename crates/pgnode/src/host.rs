//! Which node this machine is: its host name and local addresses. A role only runs on the
//! machine that holds that node's address, so `pgnode --role slave` typed on the master by
//! mistake cannot set the master's data directory aside.

use pgnode_core::config::{Cluster, Role};
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

/// The role of this machine, from its host name or, failing that, its addresses.
pub fn detect_role(cluster: &Cluster) -> Option<Role> {
    let name = hostname();
    let short = name.split('.').next().unwrap_or("");
    let addrs = local_addresses();
    let nodes = cluster.nodes();
    nodes
        .iter()
        .find(|n| n.name.as_str() == short)
        .or_else(|| nodes.iter().find(|n| addrs.contains(&n.address)))
        .map(|n| n.role)
}

/// Refuses to converge a role on a machine that does not hold its node's address. A dry run
/// only warns: it changes nothing.
pub fn may_run(cluster: &Cluster, role: Role, dry_run: bool) -> Result<(), String> {
    let node = cluster.node(role);
    let addrs = local_addresses();
    if addrs.contains(&node.address) {
        return Ok(());
    }
    let msg = format!(
        "this machine does not have address {} of node {} (its addresses: {}); refusing to run role {role} here",
        node.address,
        node.name,
        addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    );
    if dry_run {
        eprintln!("pgnode: warning: {msg} (dry run: continuing, nothing changes)");
        return Ok(());
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

/// Takes the node-wide run lock (released when the file is dropped, or when the process dies).
pub fn lock(path: &std::path::Path) -> Result<std::fs::File, String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open the run lock {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another pgnode run holds {} on this machine; wait for it to finish",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let p = std::env::temp_dir().join(format!("pgnode-lock-{}", std::process::id()));
        let first = lock(&p).unwrap();
        let e = lock(&p).unwrap_err();
        assert!(e.contains("another pgnode run holds"), "{e}");
        drop(first);
        assert!(lock(&p).is_ok());
        std::fs::remove_file(p).unwrap();
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
