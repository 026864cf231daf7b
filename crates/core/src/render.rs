//! The data every template sees, built from the validated config, this node, the PostgreSQL
//! major and the secrets. One function, so that all roles render from the same facts.

use serde_json::{json, Value};

use crate::error::Result;
use crate::files::FileSpec;
use crate::templates::Templates;
use crate::Ctx;

/// Where the postgres account's passfile lives (used by the standby's primary_conninfo).
pub fn postgres_pgpass() -> String {
    format!("{}/.pgpass", crate::ctx::POSTGRES_HOME)
}

/// The template data for `ctx`'s node.
///
/// Errors: when secrets are needed but unavailable.
pub fn data(ctx: &Ctx) -> Result<Value> {
    let c = &ctx.cluster;
    let s = ctx.secrets()?;
    let node = |n: &crate::config::Node| json!({"name": n.name, "address": n.address.to_string(), "role": n.role.as_str(), "slot": n.slot});
    let pg = &c.postgresql;
    let major = ctx.major.get();
    let me = ctx.node();
    // Every other PostgreSQL node may one day follow this one (after a switchover).
    let others: Vec<Value> = c
        .standbys()
        .iter()
        .filter(|n| n.name != me.name)
        .map(node)
        .collect();
    Ok(json!({
        "major": major,
        "pg12plus": major >= 12,
        "pg13plus": major >= 13,
        "port": ctx.port(),
        "node": node(ctx.node()),
        "is_master": ctx.role == crate::config::Role::Master,
        "master": node(&c.master),
        "standbys": c.standbys().iter().map(node).collect::<Vec<_>>(),
        "standbys_phrase": standbys_phrase(c),
        "other_standbys": others,
        "backup": node(&c.backup),
        "pg": {
            "max_wal_senders": pg.max_wal_senders,
            "max_replication_slots": pg.max_replication_slots,
            "wal_keep_size_mb": pg.wal_keep_size_mb,
            "wal_keep_segments": pg.wal_keep_size_mb.div_ceil(16),
            "max_slot_wal_keep_size_mb": pg.max_slot_wal_keep_size_mb,
            "hot_standby_feedback": if pg.hot_standby_feedback { "on" } else { "off" },
        },
        // This node's own slot (a standby streams through it).
        "replication": {"user": c.replication.user, "slot": me.slot},
        "barman": {
            "server": c.barman.server,
            "user": c.barman.user,
            "streaming_user": c.barman.streaming_user,
            "slot": c.barman.slot,
            "retention_policy": c.barman.retention_policy,
            "minimum_redundancy": c.barman.minimum_redundancy,
            "last_backup_maximum_age": c.barman.last_backup_maximum_age,
            "backup_schedule": c.barman.backup_schedule,
        },
        "bin_dir": ctx.bin_dir().to_string_lossy(),
        "pgpass": postgres_pgpass(),
        "archive_public_key": s.archive_ssh_key.public,
        "backup_host_public_key": s.backup_host_key.public,
    }))
}

/// "the hot standby streams through slot pg_slot_1" or, with more, "the hot standbys stream
/// through slots pg_slot_1, pg_slot_2" (a comment in postgresql.conf).
fn standbys_phrase(c: &crate::config::Cluster) -> String {
    let slots: Vec<&str> = c
        .standbys()
        .iter()
        .filter_map(|n| n.slot.as_ref().map(|s| s.as_str()))
        .collect();
    match slots.as_slice() {
        [one] => format!("the hot standby streams through slot {one}"),
        many => format!("the hot standbys stream through slots {}", many.join(", ")),
    }
}

/// The files every PostgreSQL node gets: `conf.d/pgnode.conf` and `pg_hba.conf`.
///
/// Errors: a template failure.
pub fn server_files(ctx: &Ctx, t: &Templates, data: &Value) -> Result<Vec<FileSpec>> {
    let conf = ctx.conf_dir();
    Ok(vec![
        FileSpec::new(
            conf.join("conf.d/pgnode.conf"),
            t.render("postgresql.conf", data)?,
            "postgres",
            0o644,
        ),
        FileSpec::new(
            conf.join("pg_hba.conf"),
            t.render("pg_hba.conf", data)?,
            "postgres",
            0o640,
        ),
    ])
}

/// A `.pgpass` line's worth of facts.
pub struct PassEntry<'a> {
    pub host: String,
    pub database: &'a str,
    pub user: &'a str,
}

/// Renders a passfile for `entries` (passwords from the secrets).
///
/// Errors: a missing password or a template failure.
pub fn pgpass(ctx: &Ctx, t: &Templates, entries: &[PassEntry<'_>]) -> Result<String> {
    let mut list = Vec::new();
    for e in entries {
        list.push(json!({"host": e.host, "port": ctx.port(), "database": e.database, "user": e.user, "password": ctx.password(e.user)?}));
    }
    t.render("pgpass", &json!({"entries": list}))
}
