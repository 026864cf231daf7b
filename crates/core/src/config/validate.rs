//! Validation of the nodes: names, roles, addresses, slots; and the assembly of the [`Cluster`]
//! from the raw file, collecting every problem instead of stopping at the first.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::raw::{RawConfig, RawNode};
use super::values::{
    cross_checks, is_dns_label, pg_user, slot, validate_barman, validate_postgres,
};
use super::*;

pub(super) struct V(Vec<Problem>);

impl V {
    pub(super) fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Cluster, Vec<Problem>> {
    let mut v = V(Vec::new());
    if raw.version > 1 {
        v.bad(
            "version",
            format!(
                "version {} is for a newer pgnode (this one, {}, reads version 1)",
                raw.version,
                env!("CARGO_PKG_VERSION")
            ),
        );
    } else if raw.version != 1 {
        v.bad(
            "version",
            format!("unsupported version {} (expected 1)", raw.version),
        );
    }
    if let Some(why) = raw
        .min_pgnode
        .as_deref()
        .and_then(|m| rules::min_pgnode(m, env!("CARGO_PKG_VERSION")))
    {
        v.bad("min_pgnode", why);
    }
    if !(8..=30).contains(&raw.network.prefix) {
        v.bad(
            "network.prefix",
            format!("{} is not a prefix length from 8 to 30", raw.network.prefix),
        );
    }
    let first_slot = slot(&raw.replication.slot, "replication.slot", &mut v);
    let nodes = validate_nodes(&raw.nodes, raw.network.prefix, &first_slot, &mut v);
    let postgresql = validate_postgres(&raw.postgresql, &mut v);
    let replication = Replication {
        user: pg_user(&raw.replication.user, "replication.user", &mut v),
        synchronous: raw.replication.synchronous,
    };
    let barman = validate_barman(&raw.barman, &mut v);
    let monitoring = super::monitoring::validate_monitoring(&raw.monitoring, &mut v);
    cross_checks(&replication, &barman, &mut v);
    let taken = [
        replication.user.as_str(),
        barman.user.as_str(),
        barman.streaming_user.as_str(),
        Cluster::MONITOR_USER,
    ];
    let clients = super::clients::validate_clients(&raw.clients, &taken, &mut v);
    if let Some((master, slaves, _)) = &nodes {
        let pg_nodes: Vec<&Node> = std::iter::once(master).chain(slaves).collect();
        standby_slots(&raw.nodes, &pg_nodes, &barman, &postgresql, &mut v);
    }
    match nodes {
        Some((master, slaves, backup)) if v.0.is_empty() => Ok(Cluster {
            master,
            slaves,
            backup,
            prefix: raw.network.prefix,
            postgresql,
            replication,
            barman,
            monitoring,
            clients,
        }),
        _ => Err(v.0),
    }
}

type Roles = (Node, Vec<Node>, Node);

pub(super) fn validate_nodes(
    raw: &[RawNode],
    prefix: u8,
    first_slot: &SlotName,
    v: &mut V,
) -> Option<Roles> {
    let mut names = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    let mut nodes = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let f = |k: &str| format!("nodes[{i}].{k}");
        if !is_dns_label(&n.name) {
            v.bad(
                f("name"),
                format!(
                    "{:?} is not a valid host name (a-z, 0-9, '-', at most 63)",
                    n.name
                ),
            );
        } else if !names.insert(n.name.clone()) {
            v.bad(f("name"), format!("duplicate node name {:?}", n.name));
        }
        let role = Role::parse(&n.role);
        if role.is_none() {
            v.bad(f("role"), format!("unknown role {:?} (expected master, slave or backup; aliases primary, standby)", n.role));
        }
        let addr = match n.address.parse::<Ipv4Addr>() {
            Ok(a)
                if a.is_loopback()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || a.is_broadcast() =>
            {
                v.bad(f("address"), format!("{a} cannot be a node address"));
                None
            }
            Ok(a) => {
                if !addrs.insert(a) {
                    v.bad(f("address"), format!("duplicate address {a}"));
                }
                Some(a)
            }
            Err(_) => {
                v.bad(
                    f("address"),
                    format!("{:?} is not an IPv4 address", n.address),
                );
                None
            }
        };
        let own_slot = n.slot.as_ref().map(|s| slot(s, &f("slot"), v));
        if role == Some(Role::Backup) && own_slot.is_some() {
            v.bad(f("slot"), format!("the backup node streams through barman.slot, not a slot of its own (remove \"slot\" from {:?})", n.name));
        }
        if let (Some(role), Some(address)) = (role, addr) {
            // Default slots are numbered among the slaves in config order; the first one is
            // replication.slot (pg_slot_1), which configs written before per-node slots set.
            let slot = match (own_slot, role) {
                (Some(s), _) => Some(s),
                (None, Role::Slave) => {
                    let k = 1 + nodes
                        .iter()
                        .filter(|x: &&Node| x.role == Role::Slave)
                        .count();
                    Some(if k == 1 {
                        first_slot.clone()
                    } else {
                        SlotName(format!("pg_slot_{k}"))
                    })
                }
                (None, _) => None,
            };
            nodes.push(Node {
                name: NodeName(n.name.clone()),
                role,
                address,
                slot,
            });
        }
    }
    same_subnet(&nodes, prefix, v);
    let mut pick = |role: Role| {
        let of_role: Vec<&Node> = nodes.iter().filter(|n| n.role == role).collect();
        match of_role.as_slice() {
            [one] => Some((*one).clone()),
            [] => {
                v.bad(
                    "nodes",
                    format!("no node has role {role} (exactly one is needed)"),
                );
                None
            }
            many => {
                v.bad(
                    "nodes",
                    format!(
                        "{} nodes have role {role} (exactly one is supported)",
                        many.len()
                    ),
                );
                None
            }
        }
    };
    let (m, b) = (pick(Role::Master), pick(Role::Backup));
    let slaves: Vec<Node> = nodes
        .iter()
        .filter(|n| n.role == Role::Slave)
        .cloned()
        .collect();
    if slaves.is_empty() {
        v.bad(
            "nodes",
            "no node has role slave (at least one is needed)".to_string(),
        );
    }
    Some((m?, slaves, b?))
}

/// Every standby slot is unique, none is Barman's, and the primary has room for them all.
/// A problem is reported at the node's own `slot` key when it has one, else at the key the
/// default came from.
pub(super) fn standby_slots(
    raw: &[RawNode],
    nodes: &[&Node],
    b: &Barman,
    pg: &Postgres,
    v: &mut V,
) {
    let field = |n: &Node| match raw.iter().position(|r| r.name == n.name.0) {
        Some(i) if raw[i].slot.is_some() => format!("nodes[{i}].slot"),
        _ => "barman.slot".to_string(),
    };
    let mut seen: Vec<&Node> = Vec::new();
    for n in nodes.iter().copied().filter(|n| n.slot.is_some()) {
        let s = n.slot.as_ref().map(|s| s.0.as_str()).unwrap_or("");
        if s == b.slot.0 {
            v.bad(
                field(n),
                format!(
                    "{s:?} is both barman.slot and the slot of {}: Barman and each standby need a slot each",
                    n.name
                ),
            );
        } else if let Some(other) = seen.iter().find(|o| o.slot == n.slot) {
            let f = field(n).replace("barman.slot", "replication.slot");
            v.bad(
                f,
                format!(
                    "{s:?} is also the slot of {}: each standby needs its own",
                    other.name
                ),
            );
        }
        seen.push(n);
    }
    let standbys = nodes.iter().filter(|n| n.role == Role::Slave).count() as u32;
    // A standby may be promoted and the old primary follow it: room for every node's slot.
    let slots = nodes.len() as u32 + 1;
    if pg.max_replication_slots < slots {
        v.bad(
            "postgresql.max_replication_slots",
            format!(
                "{} is too low: a slot per PostgreSQL node and Barman's need {slots}",
                pg.max_replication_slots
            ),
        );
    }
    // Each standby and Barman stream, and a pg_basebackup clone needs two more.
    let senders = standbys + 3;
    if pg.max_wal_senders < senders {
        v.bad(
            "postgresql.max_wal_senders",
            format!(
                "{} is too low: {standbys} standby(s), Barman and a pg_basebackup clone need {senders}",
                pg.max_wal_senders
            ),
        );
    }
}

pub(super) fn same_subnet(nodes: &[Node], prefix: u8, v: &mut V) {
    if !(8..=30).contains(&prefix) {
        return;
    }
    let mask = u32::MAX << (32 - prefix);
    if let Some(first) = nodes.first() {
        let net = u32::from(first.address) & mask;
        for n in nodes {
            if u32::from(n.address) & mask != net {
                v.bad(
                    "nodes",
                    format!(
                        "{} ({}) is not in the same /{prefix} network as {} ({})",
                        n.name, n.address, first.name, first.address
                    ),
                );
            }
        }
    }
}
