//! The cluster config (`config/cluster.json`): a strict JSON model and its validation.
//!
//! Parsing is two-staged so that a user sees every problem at once: unknown keys anywhere are
//! collected first, then the typed model is validated field by field into a [`Cluster`], whose
//! fields are newtypes that can only hold valid values.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use clients::{connect, Client, Connect};
pub use monitoring::{Email, Monitoring};

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
    pub monitoring: Monitoring,
    /// The applications that connect (`clients`), none by default.
    pub clients: Vec<Client>,
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

    /// The PostgreSQL role postgres_exporter logs in as (`pg_monitor`, local connections only).
    pub const MONITOR_USER: &'static str = "pgnode_monitor";
    /// The secret holding the password of the monitoring endpoints' basic auth.
    pub const WEB_PASSWORD: &'static str = "monitoring-web";
    /// The secret the bcrypt salt of that password is derived from (so the hash is stable).
    pub const WEB_SALT: &'static str = "monitoring-web-salt";

    /// The names of every password in the secrets: the roles pgnode creates (the monitoring
    /// role included, whether monitoring is on or not, so that turning it on changes no secret)
    /// and the monitoring endpoints' password and salt.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.pg_users().iter().map(|u| u.as_str()).collect();
        v.extend([Self::MONITOR_USER, Self::WEB_PASSWORD, Self::WEB_SALT]);
        v.extend(self.clients.iter().map(|c| c.user.as_str()));
        v
    }

    /// Of [`Cluster::secret_names`], those a secrets file may lack and a run generates (keeping
    /// every other secret): the passwords a newer pgnode added (monitoring) and the clients',
    /// which appear whenever one is added to the config.
    pub fn later_secret_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = crate::secrets::ADDED_LATER.to_vec();
        v.extend(self.clients.iter().map(|c| c.user.as_str()));
        v
    }

    /// The connection strings of every client over the PostgreSQL nodes (master first); `ca`
    /// is the cluster CA's path on the client.
    pub fn client_connect(&self, ca: &str) -> Vec<Connect> {
        let hosts: Vec<std::net::Ipv4Addr> = self.pg_nodes().iter().map(|n| n.address).collect();
        self.clients
            .iter()
            .map(|c| connect(c, &hosts, self.postgresql.port.get(), ca))
            .collect()
    }
}

/// Every key the config parser accepts, as a dotted path (`postgresql.port`, `nodes[].slot`).
/// `docs/configuration.md` must document each one (a test in `crates/core/tests` fails
/// otherwise).
pub fn accepted_keys() -> Vec<String> {
    raw::accepted_keys()
}

mod clients;
mod monitoring;
mod normalized;
mod raw;
mod rules;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use raw::{unknown_keys, RawConfig};
use validate::validate;
