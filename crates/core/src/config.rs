//! The cluster config (`config/cluster.json`): a strict JSON model and its validation.
//!
//! Parsing is two-staged so that a user sees every problem at once: unknown keys anywhere are
//! collected first, then the typed model is validated field by field into a [`Cluster`], whose
//! fields are newtypes that can only hold valid values.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One problem in the config, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub source: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}:", self.source)?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The role a node plays. `primary` and `standby` are accepted as aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[serde(alias = "primary")]
    Master,
    #[serde(alias = "standby")]
    Slave,
    Backup,
}

impl Role {
    /// Parses a role name, accepting the aliases `primary` and `standby`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "master" | "primary" => Some(Role::Master),
            "slave" | "standby" => Some(Role::Slave),
            "backup" => Some(Role::Backup),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The raw file as written by users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    #[serde(default)]
    min_pgnode: Option<String>,
    nodes: Vec<RawNode>,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    postgresql: RawPostgres,
    #[serde(default)]
    replication: RawReplication,
    #[serde(default)]
    barman: RawBarman,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    role: String,
    address: String,
    #[serde(default)]
    slot: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNetwork {
    prefix: u8,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork { prefix: 24 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPostgres {
    major: serde_json::Value,
    port: u32,
    max_wal_senders: u32,
    max_replication_slots: u32,
    wal_keep_size_mb: u64,
    max_slot_wal_keep_size_mb: i64,
    hot_standby_feedback: bool,
}

impl Default for RawPostgres {
    fn default() -> Self {
        RawPostgres {
            major: serde_json::Value::String("auto".into()),
            port: 5432,
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_keep_size_mb: 256,
            max_slot_wal_keep_size_mb: 4096,
            hot_standby_feedback: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReplication {
    user: String,
    slot: String,
    synchronous: bool,
}

impl Default for RawReplication {
    fn default() -> Self {
        RawReplication {
            user: "streaming_user".into(),
            slot: "pg_slot_1".into(),
            synchronous: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBarman {
    server: String,
    user: String,
    streaming_user: String,
    slot: String,
    retention_policy: String,
    minimum_redundancy: u32,
    last_backup_maximum_age: String,
    backup_schedule: String,
    restore_drill_schedule: String,
    incremental_schedule: String,
}

impl Default for RawBarman {
    fn default() -> Self {
        RawBarman {
            server: "master".into(),
            user: "barman".into(),
            streaming_user: "barman_streaming_user".into(),
            slot: "barman".into(),
            retention_policy: "RECOVERY WINDOW OF 7 DAYS".into(),
            minimum_redundancy: 1,
            last_backup_maximum_age: "7 DAYS".into(),
            backup_schedule: "0 3 * * *".into(),
            // Daily, two hours after the default base backup: the drill restores the newest.
            restore_drill_schedule: "0 5 * * *".into(),
            // Off: incremental backups need PostgreSQL >= 17 and Barman >= 3.11.
            incremental_schedule: String::new(),
        }
    }
}

/// The keys each object may hold, used to report every unknown key at once.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "version",
            "min_pgnode",
            "nodes",
            "network",
            "postgresql",
            "replication",
            "barman",
        ],
    ),
    ("nodes[]", &["name", "role", "address", "slot"]),
    ("network", &["prefix"]),
    (
        "postgresql",
        &[
            "major",
            "port",
            "max_wal_senders",
            "max_replication_slots",
            "wal_keep_size_mb",
            "max_slot_wal_keep_size_mb",
            "hot_standby_feedback",
        ],
    ),
    ("replication", &["user", "slot", "synchronous"]),
    (
        "barman",
        &[
            "server",
            "user",
            "streaming_user",
            "slot",
            "retention_policy",
            "minimum_redundancy",
            "last_backup_maximum_age",
            "backup_schedule",
            "restore_drill_schedule",
            "incremental_schedule",
        ],
    ),
];

/// A node's name: a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeName(String);

/// A PostgreSQL role name pgnode creates (lower case identifier, not a reserved role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgUser(String);

/// A replication slot name PostgreSQL accepts: `[a-z0-9_]{1,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotName(String);

/// A TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Port(u16);

/// The PostgreSQL major version to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MajorSpec {
    /// The distribution's default (15 on Debian 12, 17 on Debian 13).
    Auto,
    Fixed(PgMajor),
}

/// A supported PostgreSQL major version (10 to 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PgMajor(u16);

macro_rules! str_newtype {
    ($t:ty) => {
        impl $t {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
str_newtype!(NodeName);
str_newtype!(PgUser);
str_newtype!(SlotName);

impl Port {
    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl PgMajor {
    /// Oldest and newest majors pgnode has templates for.
    pub const SUPPORTED: std::ops::RangeInclusive<u16> = 10..=17;

    /// A supported major, or `None`.
    pub fn new(v: u16) -> Option<PgMajor> {
        Self::SUPPORTED.contains(&v).then_some(PgMajor(v))
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A validated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: NodeName,
    pub role: Role,
    pub address: Ipv4Addr,
    /// The physical slot this node streams through on the primary while it is a standby.
    /// Every slave has one (`pg_slot_1`, `pg_slot_2`, ... in config order by default); a
    /// master has one only when the config names it (used once it becomes a standby).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotName>,
}

impl Node {
    /// This node's standby slot.
    ///
    /// Errors: [`crate::Error::Refused`] for a node without one (the backup, or a master whose
    /// config names none), which validation prevents for every slave.
    pub fn standby_slot(&self) -> crate::error::Result<&SlotName> {
        self.slot.as_ref().ok_or_else(|| {
            crate::Error::Refused(format!(
                "node {} ({}) has no replication slot in the config",
                self.name, self.role
            ))
        })
    }
}

/// PostgreSQL settings pgnode manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Postgres {
    pub major: MajorSpec,
    pub port: Port,
    pub max_wal_senders: u32,
    pub max_replication_slots: u32,
    pub wal_keep_size_mb: u64,
    pub max_slot_wal_keep_size_mb: u64,
    pub hot_standby_feedback: bool,
}

/// The standbys' replication user (each standby's slot is on its node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replication {
    pub user: PgUser,
    /// Zero-loss mode: a commit returns only once a standby has the WAL
    /// (`synchronous_standby_names = 'ANY 1 (...)'`). Off by default.
    pub synchronous: bool,
}

/// Barman's users, slot, retention and schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Barman {
    pub server: String,
    pub user: PgUser,
    pub streaming_user: PgUser,
    pub slot: SlotName,
    pub retention_policy: String,
    pub minimum_redundancy: u32,
    pub last_backup_maximum_age: String,
    pub backup_schedule: String,
    /// When `pgnode restore --drill` restores and checks the newest backup (cron, 5 fields).
    pub restore_drill_schedule: String,
    /// When incremental backups run (`barman backup --incremental latest`); empty: never.
    /// PostgreSQL >= 17 only (the primary then runs with `summarize_wal = on`).
    pub incremental_schedule: String,
}

/// A fully validated cluster description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    pub master: Node,
    /// The hot standbys, in config order (at least one).
    pub slaves: Vec<Node>,
    pub backup: Node,
    pub prefix: u8,
    pub postgresql: Postgres,
    pub replication: Replication,
    pub barman: Barman,
}

impl Cluster {
    /// Reads and validates a config file.
    ///
    /// Errors: [`crate::Error::Read`] when unreadable, [`crate::Error::Config`] listing every
    /// problem otherwise.
    pub fn load(path: &Path) -> crate::error::Result<Cluster> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Cluster::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates config text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Cluster, ConfigErrors> {
        let fail = |problems| ConfigErrors {
            source: source.to_string(),
            problems,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            fail(vec![Problem {
                field: "(file)".into(),
                message: format!("not valid JSON: {e}"),
            }])
        })?;
        let mut problems = Vec::new();
        unknown_keys(&value, "", &mut problems);
        problems.extend(rules::type_problems(&value));
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| {
            fail(vec![Problem {
                field: "(file)".into(),
                message: e.to_string(),
            }])
        })?;
        validate(raw).map_err(fail)
    }

    /// All nodes, in provisioning order: master, the slaves in config order, backup.
    pub fn nodes(&self) -> Vec<&Node> {
        std::iter::once(&self.master)
            .chain(&self.slaves)
            .chain(std::iter::once(&self.backup))
            .collect()
    }

    /// The hot standbys, in config order.
    pub fn standbys(&self) -> &[Node] {
        &self.slaves
    }

    /// The PostgreSQL nodes: the master, then the standbys.
    pub fn pg_nodes(&self) -> Vec<&Node> {
        std::iter::once(&self.master).chain(&self.slaves).collect()
    }

    /// The nodes playing `role`, in provisioning order.
    pub fn with_role(&self, role: Role) -> Vec<&Node> {
        self.nodes()
            .into_iter()
            .filter(|n| n.role == role)
            .collect()
    }

    /// The node called `name`.
    pub fn named(&self, name: &str) -> Option<&Node> {
        self.nodes().into_iter().find(|n| n.name.as_str() == name)
    }

    /// Barman's receiver's application name (Barman's default `streaming_archiver_name`).
    pub const BARMAN_RECEIVER: &'static str = "barman_receive_wal";

    /// `synchronous_standby_names` in zero-loss mode: any one of the PostgreSQL nodes (a node
    /// never connects to itself, so the same list serves whichever is primary); `None` when the
    /// mode is off. Barman's receiver is deliberately not listed: a commit acknowledged by
    /// Barman alone would be lost by a failover to a standby, which is what this mode promises
    /// not to do (Barman's archive keeps it for a point-in-time recovery either way).
    pub fn synchronous_standby_names(&self) -> Option<String> {
        if !self.replication.synchronous {
            return None;
        }
        let names: Vec<String> = self
            .pg_nodes()
            .iter()
            .map(|n| format!("\"{}\"", n.name))
            .collect();
        Some(format!("ANY 1 ({})", names.join(", ")))
    }

    /// The users pgnode creates on the primary, in a stable order.
    pub fn pg_users(&self) -> [&PgUser; 3] {
        [
            &self.replication.user,
            &self.barman.user,
            &self.barman.streaming_user,
        ]
    }
}

fn unknown_keys(v: &serde_json::Value, path: &str, out: &mut Vec<Problem>) {
    match v {
        serde_json::Value::Object(map) => {
            let schema = if path.starts_with("nodes[") {
                "nodes[]"
            } else {
                path
            };
            let Some((_, known)) = KNOWN.iter().find(|(p, _)| *p == schema) else {
                return;
            };
            for (k, child) in map {
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if !known.contains(&k.as_str()) {
                    out.push(Problem {
                        field: child_path,
                        message: format!("unknown key (known keys: {})", known.join(", ")),
                    });
                } else if child.is_object() || (k == "nodes" && child.is_array()) {
                    unknown_keys(child, &child_path, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unknown_keys(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

struct V(Vec<Problem>);

impl V {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

fn validate(raw: RawConfig) -> Result<Cluster, Vec<Problem>> {
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
    cross_checks(&replication, &barman, &mut v);
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
        }),
        _ => Err(v.0),
    }
}

type Roles = (Node, Vec<Node>, Node);

fn validate_nodes(raw: &[RawNode], prefix: u8, first_slot: &SlotName, v: &mut V) -> Option<Roles> {
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
fn standby_slots(raw: &[RawNode], nodes: &[&Node], b: &Barman, pg: &Postgres, v: &mut V) {
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

fn same_subnet(nodes: &[Node], prefix: u8, v: &mut V) {
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

fn validate_postgres(raw: &RawPostgres, v: &mut V) -> Postgres {
    let major = match &raw.major {
        serde_json::Value::String(s) if s == "auto" => MajorSpec::Auto,
        serde_json::Value::Number(n) => match n
            .as_u64()
            .and_then(|x| u16::try_from(x).ok())
            .and_then(PgMajor::new)
        {
            Some(m) => MajorSpec::Fixed(m),
            None => {
                v.bad(
                    "postgresql.major",
                    format!("{n} is not a supported PostgreSQL major (10 to 17)"),
                );
                MajorSpec::Auto
            }
        },
        other => {
            v.bad(
                "postgresql.major",
                format!("{other} must be \"auto\" or a major version number such as 15"),
            );
            MajorSpec::Auto
        }
    };
    let port = match u16::try_from(raw.port) {
        Ok(p) if p >= 1024 => Port(p),
        _ => {
            v.bad(
                "postgresql.port",
                format!("{} is not a port from 1024 to 65535", raw.port),
            );
            Port(5432)
        }
    };
    // -1 (unlimited) lets an abandoned slot fill the primary's disk: pgnode insists on a bound.
    if raw.max_slot_wal_keep_size_mb < 64 {
        v.bad("postgresql.max_slot_wal_keep_size_mb", format!("{} must be a bound of at least 64 MB (unlimited lets an abandoned slot fill the primary's disk)", raw.max_slot_wal_keep_size_mb));
    }
    Postgres {
        major,
        port,
        max_wal_senders: raw.max_wal_senders,
        max_replication_slots: raw.max_replication_slots,
        wal_keep_size_mb: raw.wal_keep_size_mb,
        max_slot_wal_keep_size_mb: raw.max_slot_wal_keep_size_mb.max(0) as u64,
        hot_standby_feedback: raw.hot_standby_feedback,
    }
}

fn validate_barman(raw: &RawBarman, v: &mut V) -> Barman {
    let server_ok = !raw.server.is_empty()
        && raw.server.len() <= 63
        && raw
            .server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !["barman", "all"].contains(&raw.server.as_str());
    if !server_ok {
        v.bad("barman.server", format!("{:?} is not a usable Barman server name (letters, digits, '-', '_'; not 'barman' or 'all')", raw.server));
    }
    if !is_retention_policy(&raw.retention_policy) {
        v.bad(
            "barman.retention_policy",
            format!(
                "{:?} is not 'REDUNDANCY n' or 'RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS'",
                raw.retention_policy
            ),
        );
    }
    if !is_age(&raw.last_backup_maximum_age) {
        v.bad(
            "barman.last_backup_maximum_age",
            format!(
                "{:?} is not 'n DAYS|WEEKS|MONTHS'",
                raw.last_backup_maximum_age
            ),
        );
    }
    if let Err(why) = rules::cron_schedule(&raw.restore_drill_schedule) {
        v.bad(
            "barman.restore_drill_schedule",
            format!(
                "{:?} is not a cron schedule cron would run, such as \"0 5 * * *\": {why}",
                raw.restore_drill_schedule
            ),
        );
    }
    if !raw.incremental_schedule.is_empty() {
        if let Err(why) = rules::cron_schedule(&raw.incremental_schedule) {
            v.bad(
                "barman.incremental_schedule",
                format!(
                    "{:?} is not empty (off) or a cron schedule cron would run, such as \"0 3 * * 1-6\": {why}",
                    raw.incremental_schedule
                ),
            );
        }
    }
    if let Err(why) = rules::cron_schedule(&raw.backup_schedule) {
        v.bad(
            "barman.backup_schedule",
            format!(
                "{:?} is not a cron schedule cron would run, such as \"0 3 * * *\": {why}",
                raw.backup_schedule
            ),
        );
    }
    Barman {
        server: raw.server.clone(),
        user: pg_user(&raw.user, "barman.user", v),
        streaming_user: pg_user(&raw.streaming_user, "barman.streaming_user", v),
        slot: slot(&raw.slot, "barman.slot", v),
        retention_policy: raw.retention_policy.to_uppercase(),
        minimum_redundancy: raw.minimum_redundancy,
        last_backup_maximum_age: raw.last_backup_maximum_age.to_uppercase(),
        backup_schedule: raw.backup_schedule.clone(),
        restore_drill_schedule: raw.restore_drill_schedule.clone(),
        incremental_schedule: raw.incremental_schedule.clone(),
    }
}

fn cross_checks(r: &Replication, b: &Barman, v: &mut V) {
    let users = [
        ("replication.user", &r.user),
        ("barman.user", &b.user),
        ("barman.streaming_user", &b.streaming_user),
    ];
    for (i, (fa, a)) in users.iter().enumerate() {
        for (fb, bb) in &users[i + 1..] {
            if a == bb {
                v.bad(
                    *fb,
                    format!("{:?} is also {fa}: each needs its own role", a.0),
                );
            }
        }
    }
}

fn pg_user(s: &str, field: &str, v: &mut V) -> PgUser {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with("pg_")
        && s != "postgres"
        && s != "public";
    if !ok {
        v.bad(field, format!("{s:?} is not a usable role name (lower-case letters, digits, '_'; not postgres, public or pg_*)"));
    }
    PgUser(s.to_string())
}

/// PostgreSQL's rule for slot names: lower-case letters, digits and underscores, at most 63.
fn slot(s: &str, field: &str, v: &mut V) -> SlotName {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        v.bad(field, format!("{s:?} is not a valid replication slot name (PostgreSQL allows only a-z, 0-9 and '_', at most 63 characters)"));
    }
    SlotName(s.to_string())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_age(s: &str) -> bool {
    let w: Vec<String> = s.split_whitespace().map(str::to_uppercase).collect();
    matches!(w.as_slice(), [n, unit] if is_count(n) && ["DAY", "DAYS", "WEEK", "WEEKS", "MONTH", "MONTHS"].contains(&unit.as_str()))
}

fn is_retention_policy(s: &str) -> bool {
    let w: Vec<String> = s.split_whitespace().map(str::to_uppercase).collect();
    match w.as_slice() {
        [r, n] if r == "REDUNDANCY" => is_count(n),
        [r, wi, of, rest @ ..] if r == "RECOVERY" && wi == "WINDOW" && of == "OF" => {
            is_age(&rest.join(" "))
        }
        _ => false,
    }
}

fn is_count(s: &str) -> bool {
    !s.is_empty() && s.len() < 6 && s.chars().all(|c| c.is_ascii_digit()) && s != "0"
}

mod normalized;

mod rules;
#[cfg(test)]
mod tests;
