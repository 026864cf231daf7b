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
