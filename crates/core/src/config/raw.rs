//! The config file as written by users: serde's view of it, defaults included, and the list of
//! keys each object may hold (so every unknown key is reported at once, not just the first).

use serde::Deserialize;

use super::Problem;

/// The raw file as written by users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) version: u32,
    #[serde(default)]
    pub(super) min_pgnode: Option<String>,
    pub(super) nodes: Vec<RawNode>,
    #[serde(default)]
    pub(super) network: RawNetwork,
    #[serde(default)]
    pub(super) postgresql: RawPostgres,
    #[serde(default)]
    pub(super) replication: RawReplication,
    #[serde(default)]
    pub(super) barman: RawBarman,
    #[serde(default)]
    pub(super) monitoring: super::monitoring::RawMonitoring,
    #[serde(default)]
    pub(super) clients: Vec<super::clients::RawClient>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: String,
    pub(super) role: String,
    pub(super) address: String,
    #[serde(default)]
    pub(super) slot: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNetwork {
    pub(super) prefix: u8,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork { prefix: 24 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPostgres {
    pub(super) major: serde_json::Value,
    pub(super) port: u32,
    pub(super) max_wal_senders: u32,
    pub(super) max_replication_slots: u32,
    pub(super) wal_keep_size_mb: u64,
    pub(super) max_slot_wal_keep_size_mb: i64,
    pub(super) hot_standby_feedback: bool,
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
pub(super) struct RawReplication {
    pub(super) user: String,
    pub(super) slot: String,
    pub(super) synchronous: bool,
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
pub(super) struct RawBarman {
    pub(super) server: String,
    pub(super) user: String,
    pub(super) streaming_user: String,
    pub(super) slot: String,
    pub(super) retention_policy: String,
    pub(super) minimum_redundancy: u32,
    pub(super) last_backup_maximum_age: String,
    pub(super) backup_schedule: String,
    pub(super) restore_drill_schedule: String,
    pub(super) incremental_schedule: String,
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
            "monitoring",
            "clients",
        ],
    ),
    ("nodes[]", &["name", "role", "address", "slot"]),
    ("clients[]", &["user", "database", "hosts"]),
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
    (
        "monitoring",
        &[
            "enabled",
            "scrape_interval_seconds",
            "alert_after_seconds",
            "replay_lag_alert_seconds",
            "slot_retained_alert_mb",
            "backup_age_alert_hours",
            "disk_used_alert_percent",
            "certificate_expiry_alert_days",
            "retention_size_mb",
            "webhooks",
            "email",
        ],
    ),
    ("monitoring.email", &["to", "from", "smarthost"]),
];

/// Every key the parser accepts, as a dotted path: `version`, `nodes[].name`, `postgresql.port`,
/// ... (objects too: `postgresql`). Derived from [`KNOWN`], the table that also rejects unknown
/// keys; a unit test checks it against serde's own field lists of the `Raw*` structs, and the
/// reference `docs/configuration.md` is checked against this list (crates/core/tests).
pub(super) fn accepted_keys() -> Vec<String> {
    let mut out = Vec::new();
    for (object, keys) in KNOWN {
        for k in *keys {
            out.push(if object.is_empty() {
                (*k).to_string()
            } else {
                format!("{object}.{k}")
            });
        }
    }
    out
}

/// Every key the model does not know, anywhere in the file, each with the keys allowed there.
pub(super) fn unknown_keys(v: &serde_json::Value, path: &str, out: &mut Vec<Problem>) {
    match v {
        serde_json::Value::Object(map) => {
            let schema = if path.starts_with("nodes[") {
                "nodes[]"
            } else if path.starts_with("clients[") {
                "clients[]"
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
                } else if child.is_object()
                    || ((k == "nodes" || k == "clients") && path.is_empty() && child.is_array())
                {
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
