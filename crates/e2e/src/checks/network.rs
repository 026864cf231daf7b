//! The lab itself: every node reaches every other on the cluster's network, no guest has a
//! default route out of it, and (where the target isolates the nodes, as the lab does) the host's
//! own network namespace has no address or route in the nodes' subnet.

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::{ensure, fail, Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let cluster = cx.cluster;
    if let Some(status) = cluster.target().status() {
        let out = status.map_err(|e| {
            crate::Failure::new("cannot ask the target for its status", e.to_string())
        })?;
        ensure(
            out.success(),
            "not every guest runs (provision/lab up first)",
            out.combined(),
        )?;
    }
    let nodes = cluster.nodes();
    for n in &nodes {
        for a in &nodes {
            let addr = a.address.to_string();
            let out = n.run(&["ping", "-c", "1", "-W", "2", &addr])?;
            ensure(
                out.success(),
                format!("{n} cannot reach {addr} on the lab bridge"),
                out.combined(),
            )?;
        }
    }
    let (net, prefix) = cluster.subnet();
    let host = if cluster.target().host_isolated() {
        let bad = host_leaks(net, prefix)?;
        ensure(
            bad.is_empty(),
            format!(
                "the host's own namespace has an address or route in the lab subnet {net}/{prefix}"
            ),
            bad.join("\n"),
        )?;
        "host namespace has no lab address or route".to_string()
    } else {
        format!(
            "host namespace not checked (target {} reaches the nodes directly)",
            cluster.target().name()
        )
    };
    for n in &nodes {
        let out = n.ok(&["ip", "-4", "route", "show"])?;
        if out.lines().any(|l| l.starts_with("default")) {
            return fail(format!("guest {n} has a default route out of the lab"), out);
        }
    }
    cx.note(format!(
        "{} guests reach each other, none has a default route; {host}",
        nodes.len()
    ));
    Ok(())
}

/// Addresses and routes of the host's own namespace inside `net/prefix`, from `ip -j`.
fn host_leaks(net: Ipv4Addr, prefix: u8) -> Result<Vec<String>> {
    let addrs = ip_json(&["-j", "-4", "addr", "show"])?;
    let routes = ip_json(&["-j", "-4", "route", "show", "table", "all"])?;
    Ok(leaks(&addrs, &routes, net, prefix))
}

fn ip_json(args: &[&str]) -> Result<Value> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| crate::Failure::new("cannot run ip on the host", e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return fail(
            format!("ip {} failed on the host", args.join(" ")),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    serde_json::from_str(&text).map_err(|e| {
        crate::Failure::new(format!("ip {} printed no JSON: {e}", args.join(" ")), text)
    })
}

/// The pure part of [`host_leaks`]: what in `ip -j` output lies in `net/prefix`.
fn leaks(addrs: &Value, routes: &Value, net: Ipv4Addr, prefix: u8) -> Vec<String> {
    let mut bad = Vec::new();
    for link in addrs.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let Some(ip) = a["local"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                if overlaps(ip, 32, net, prefix) {
                    bad.push(format!(
                        "address {ip} on {}",
                        link["ifname"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    for r in routes.as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().unwrap_or_default();
        if let Some((ip, len)) = parse_dst(dst) {
            if overlaps(ip, len, net, prefix) {
                bad.push(format!(
                    "route {dst} dev {}",
                    r["dev"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    bad
}

/// `10.0.0.0/8` or a host address; `default` (and anything else) is none.
fn parse_dst(dst: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = dst.split_once('/').unwrap_or((dst, "32"));
    Some((ip.parse().ok()?, len.parse().ok().filter(|l| *l <= 32)?))
}

/// Two networks overlap when one contains the other: compare under the shorter prefix.
fn overlaps(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let len = u32::from(alen.min(blen));
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lab_addresses_and_routes_only() {
        let addrs = serde_json::json!([
            {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
            {"ifname": "eth0", "addr_info": [{"local": "10.1.2.3", "prefixlen": 24}]},
            {"ifname": "vboxnet0", "addr_info": [{"local": "192.168.11.1", "prefixlen": 24}]}
        ]);
        let routes = serde_json::json!([
            {"dst": "default", "gateway": "10.1.2.1", "dev": "eth0"},
            {"dst": "10.1.2.0/24", "dev": "eth0"},
            {"dst": "192.168.0.0/16", "dev": "tun0"},
            {"dst": "192.168.11.101", "dev": "eth0"},
            {"dst": "192.168.12.0/24", "dev": "eth0"}
        ]);
        let net = "192.168.11.0".parse().unwrap();
        assert_eq!(
            leaks(&addrs, &routes, net, 24),
            [
                "address 192.168.11.1 on vboxnet0",
                "route 192.168.0.0/16 dev tun0",
                "route 192.168.11.101 dev eth0"
            ]
        );
        assert!(leaks(
            &addrs,
            &serde_json::json!([]),
            "172.16.0.0".parse().unwrap(),
            12
        )
        .is_empty());
    }
}
