//! The `clients` section: the applications that connect to the cluster. Each is a PostgreSQL
//! role (LOGIN, its scram password generated into the secrets, nothing more), a database it owns,
//! and the hosts it connects from: one `hostssl` line per host on every PostgreSQL node, so that
//! whichever node is primary after a switchover accepts it. `pgnode status` prints the libpq
//! connection strings that follow the primary.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::validate::V;
use super::values::pg_user;
use super::PgUser;

/// One client as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) user: String,
    pub(super) database: String,
    pub(super) hosts: Vec<String>,
}

/// A validated client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// Its role (LOGIN, no other attribute).
    pub user: PgUser,
    /// The database it owns (created when missing, never dropped).
    pub database: String,
    /// The addresses it connects from, each with its own pg_hba line on every PostgreSQL node.
    pub hosts: Vec<Ipv4Addr>,
}

/// Words pg_hba.conf reads as keywords in its database column: a client's line naming one would
/// open every database (or replication) to it.
const HBA_DATABASE_KEYWORDS: [&str; 5] =
    ["all", "sameuser", "samerole", "samegroup", "replication"];

/// PostgreSQL's unquoted identifier rule, as for roles; template databases and pg_hba's
/// keywords are not for clients.
fn database(s: &str, field: &str, v: &mut V) -> String {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s != "template0"
        && s != "template1"
        && !HBA_DATABASE_KEYWORDS.contains(&s);
    if !ok {
        v.bad(
            field,
            format!("{s:?} is not a usable database name (lower-case letters, digits, '_', at most 63; not template0, template1, or a pg_hba keyword: {})", HBA_DATABASE_KEYWORDS.join(", ")),
        );
    }
    s.to_string()
}

/// Validates every client; `taken` are the role names pgnode already uses (each client needs a
/// role of its own).
pub(super) fn validate_clients(raw: &[RawClient], taken: &[&str], v: &mut V) -> Vec<Client> {
    let mut users = BTreeSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let f = |k: &str| format!("clients[{i}].{k}");
        let user = pg_user(&c.user, &f("user"), v);
        if c.user == "all" {
            // pg_hba.conf's user column reads `all` as every role.
            v.bad(
                f("user"),
                "\"all\" is pg_hba's word for every role: a client needs a role name of its own",
            );
        } else if taken.contains(&c.user.as_str()) {
            v.bad(
                f("user"),
                format!(
                    "{:?} is a role pgnode uses for itself ({}): a client needs a role of its own",
                    c.user,
                    taken.join(", ")
                ),
            );
        } else if !users.insert(c.user.clone()) {
            v.bad(
                f("user"),
                format!("{:?} is already the user of another client", c.user),
            );
        }
        let db = database(&c.database, &f("database"), v);
        if c.hosts.is_empty() {
            v.bad(
                f("hosts"),
                "lists no host: name the addresses the client connects from",
            );
        }
        let mut hosts = Vec::new();
        for (j, h) in c.hosts.iter().enumerate() {
            let field = format!("clients[{i}].hosts[{j}]");
            match h.parse::<Ipv4Addr>() {
                Ok(a) if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() => v.bad(
                    field,
                    format!("{h} is not a client's address (loopback connections are allowed already; 0.0.0.0, multicast and broadcast never)"),
                ),
                Ok(a) if hosts.contains(&a) => v.bad(field, format!("{h} is listed twice")),
                Ok(a) => hosts.push(a),
                Err(_) => v.bad(
                    field,
                    format!("{h:?} is not an IPv4 address (one host per entry, no prefix: each gets its own /32 line)"),
                ),
            }
        }
        out.push(Client {
            user,
            database: db,
            hosts,
        });
    }
    out
}

/// The libpq connection strings of a client (URIs): `read_write` reaches whichever listed node
/// is the primary (`target_session_attrs=read-write`: libpq tries each host in turn and keeps
/// the one that accepts writes), `read_only` prefers a standby and falls back to the primary.
/// Both verify the server's certificate against the cluster CA (`sslrootcert`, a path on the
/// client) and give up on a dead host after `connect_timeout` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connect {
    pub user: String,
    pub database: String,
    pub read_write: String,
    pub read_only: String,
}

/// The connection strings of `c` over the PostgreSQL nodes `hosts` (primary first) and `port`.
pub fn connect(c: &Client, hosts: &[Ipv4Addr], port: u16, ca: &str) -> Connect {
    let list = hosts
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let uri = |attrs: &str| {
        format!(
            "postgresql://{}@{list}/{}?target_session_attrs={attrs}&sslmode=verify-full&sslrootcert={ca}&connect_timeout=5",
            c.user.as_str(),
            c.database
        )
    };
    Connect {
        user: c.user.as_str().to_string(),
        database: c.database.clone(),
        read_write: uri("read-write"),
        read_only: uri("prefer-standby"),
    }
}
