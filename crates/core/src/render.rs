//! The data every template sees, built from the validated config, this node, the PostgreSQL
//! major and the secrets. One function, so that all roles render from the same facts.

use serde_json::{json, Value};

use crate::error::Result;
use crate::files::FileSpec;
use crate::templates::Templates;
use crate::tls;
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
        "pg17plus": major >= 17,
        "port": ctx.port(),
        "node": node(ctx.node()),
        "is_master": ctx.role == crate::config::Role::Master,
        "master": node(&c.master),
        "standbys": c.standbys().iter().map(node).collect::<Vec<_>>(),
        "standbys_phrase": standbys_phrase(c),
        "synchronous_standby_names": c.synchronous_standby_names(),
        "other_standbys": others,
        "backup": node(&c.backup),
        // Applications: one line per host on every PostgreSQL node (any may be the primary).
        "clients": c.clients.iter().map(|cl| json!({
            "user": cl.user,
            "database": cl.database,
            "hosts": cl.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
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
            "restore_drill_schedule": c.barman.restore_drill_schedule,
            "incremental_schedule": c.barman.incremental_schedule,
        },
        "bin_dir": ctx.bin_dir().to_string_lossy(),
        "pgpass": postgres_pgpass(),
        "put_wal_only": PUT_WAL_ONLY,
        "tls": {"ca": tls::CA_FILE, "cert": tls::CERT_FILE, "key": tls::KEY_FILE},
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

/// The forced command of the archive key on the backup node.
pub const PUT_WAL_ONLY: &str = "/usr/local/sbin/pgnode-put-wal-only";

/// The cluster CA certificate every node verifies its peers with.
///
/// Errors: TLS material missing outside a dry run.
pub fn ca_file(ctx: &Ctx) -> Result<FileSpec> {
    let ca = match ctx
        .secrets()?
        .tls_for(&crate::secrets::tls_nodes(&ctx.cluster))
    {
        Ok(t) => t.ca.cert.clone(),
        Err(_) if ctx.dry_run => "<cluster CA generated on first run>\n".into(),
        Err(why) => return Err(tls_missing(ctx, why)),
    };
    Ok(FileSpec::new(tls::CA_FILE, ca, "root", 0o644))
}

fn tls_missing(ctx: &Ctx, why: String) -> crate::Error {
    crate::Error::Secrets {
        path: ctx.secrets_path(),
        message: format!("{why} (run pgnode secrets to add it)"),
    }
}

/// This node's certificate and private key, PEM (placeholders in a dry run before they exist).
///
/// Errors: TLS material missing outside a dry run.
pub fn node_cert_key(ctx: &Ctx) -> Result<(String, String)> {
    let me = ctx.node().name.to_string();
    match ctx
        .secrets()?
        .tls_for(&crate::secrets::tls_nodes(&ctx.cluster))
    {
        Ok(t) => Ok((t.nodes[&me].cert.clone(), t.nodes[&me].key.clone())),
        Err(_) if ctx.dry_run => Ok(("<certificate>\n".into(), "<key>\n".into())),
        Err(why) => Err(tls_missing(ctx, why)),
    }
}

/// This PostgreSQL node's server certificate and key (the key 0600 and owned by postgres,
/// as PostgreSQL demands), and the CA.
///
/// Errors: TLS material missing outside a dry run.
pub fn tls_files(ctx: &Ctx) -> Result<Vec<FileSpec>> {
    let (cert, key) = node_cert_key(ctx)?;
    Ok(vec![
        ca_file(ctx)?,
        FileSpec::new(tls::CERT_FILE, cert, "root", 0o644),
        FileSpec::new(tls::KEY_FILE, key, "postgres", 0o600).secret(),
    ])
}

/// The files every PostgreSQL node gets: `conf.d/pgnode.conf`, `pg_hba.conf` and its TLS
/// certificate.
///
/// Errors: a template failure.
pub fn server_files(ctx: &Ctx, t: &Templates, data: &Value) -> Result<Vec<FileSpec>> {
    let conf = ctx.conf_dir();
    let mut files = tls_files(ctx)?;
    files.extend([
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
    ]);
    Ok(files)
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
