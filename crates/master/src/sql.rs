//! SQL steps on the primary: roles, grants, slots. Each checks the catalogs first, so a rerun
//! on a healthy primary changes nothing (re-creating a slot would even be an error).

use pgnode_core::exec::Cmd;
use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, Ctx, Error};

/// A LOGIN role with a SCRAM password from the secrets; `replication` says whether it streams.
/// The password is checked by logging in over loopback and set through psql's stdin.
pub fn role<'a>(ctx: &'a Ctx, user: &'a str, replication: bool) -> Step<'a> {
    Step::change(
        format!(
            "role {user} (login{}, scram-sha-256)",
            if replication { ", replication" } else { "" }
        ),
        move || {
            let q = format!(
                "SELECT rolcanlogin, rolreplication, rolsuper, coalesce(rolpassword LIKE 'SCRAM-SHA-256$%', false) FROM pg_authid WHERE rolname = '{user}';"
            );
            let rows = pg::query(&pg::local(ctx, &q))?;
            let want = vec![
                "t".to_string(),
                if replication { "t" } else { "f" }.to_string(),
                "f".into(),
                "t".into(),
            ];
            match rows.first() {
                None => return Ok(Check::Needs("does not exist".into())),
                Some(r) if *r != want => {
                    return Ok(Check::Needs(format!(
                        "attributes (login, replication, superuser, scram) are {r:?}"
                    )))
                }
                _ => {}
            }
            // The password goes through a private passfile: in PGPASSWORD it would be readable
            // in /proc/PID/environ for as long as psql runs.
            let line = format!(
                "127.0.0.1:{}:postgres:{user}:{}\n",
                ctx.port(),
                ctx.password(user)?
            );
            let login = pg::with_passfile(&line, |passfile| {
                Cmd::new("psql")
                    .args([
                        "-X",
                        "-w",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &ctx.port().to_string(),
                        "-U",
                        user,
                        "-d",
                        "postgres",
                        "-f",
                        "-",
                    ])
                    .env("PGPASSFILE", passfile.to_string_lossy())
                    .stdin("SELECT 1;")
                    .probe()
                    .map_err(Into::into)
            })?;
            Ok(if login.success() {
                Check::Ok
            } else {
                Check::Needs(format!("password login fails: {}", login.stderr.trim()))
            })
        },
        move || {
            let attrs = if replication {
                "LOGIN REPLICATION"
            } else {
                "LOGIN NOREPLICATION"
            };
            // password_encryption is set in the session too: a role must never get an md5 hash.
            let sql = format!(
                "SET password_encryption = 'scram-sha-256';\n\
                 SELECT 'CREATE ROLE {user}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') \\gexec\n\
                 ALTER ROLE {user} WITH {attrs} NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{}';\n",
                ctx.password(user)?
            );
            pg::local(ctx, "").stdin_secret(sql).run()?;
            Ok(())
        },
    )
}

/// A client's database, owned by its role: created when missing, given back to its role when
/// someone changed the owner; never dropped (a client removed from the config keeps its data).
pub fn database<'a>(ctx: &'a Ctx, name: &'a str, owner: &'a str) -> Step<'a> {
    Step::change(
        format!("database {name} owned by {owner}"),
        move || {
            let q = format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}';"
            );
            let rows = pg::query(&pg::local(ctx, &q))?;
            Ok(match rows.first().and_then(|r| r.first()) {
                None => Check::Needs("does not exist".into()),
                Some(o) if o == owner => Check::Ok,
                Some(o) => Check::Needs(format!("owned by {o}")),
            })
        },
        move || {
            // CREATE DATABASE cannot run in a transaction: psql's stdin runs each statement on
            // its own.
            let sql = format!(
                "SELECT 'CREATE DATABASE {name} OWNER {owner}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}') \\gexec\n\
                 ALTER DATABASE {name} OWNER TO {owner};\n"
            );
            pg::local(ctx, &sql).run()?;
            Ok(())
        },
    )
}

/// What Barman needs without being a superuser, per PostgreSQL major.
pub fn barman_privileges(major: u16) -> (Vec<&'static str>, Vec<&'static str>) {
    let functions = if major >= 15 {
        vec![
            "pg_backup_start(text, boolean)",
            "pg_backup_stop(boolean)",
            "pg_switch_wal()",
            "pg_create_restore_point(text)",
        ]
    } else {
        vec![
            "pg_start_backup(text, boolean, boolean)",
            "pg_stop_backup()",
            "pg_stop_backup(boolean, boolean)",
            "pg_switch_wal()",
            "pg_create_restore_point(text)",
        ]
    };
    // Exactly what Barman 3.4's has_backup_privileges() tests, nothing more. pg_checkpoint is
    // not granted: Barman 3.4 still demands a superuser for `switch-wal --force`, so pgnode
    // writes a restore point and switches without --force instead.
    (functions, vec!["pg_read_all_settings", "pg_read_all_stats"])
}

/// Barman's role gets the backup functions and monitoring roles, and nothing more.
pub fn barman_grants(ctx: &Ctx) -> Step<'_> {
    let user = ctx.cluster.barman.user.as_str();
    let (functions, roles) = barman_privileges(ctx.major.get());
    grants(
        ctx,
        user,
        functions,
        roles,
        "has backup privileges (not superuser)",
    )
}

/// The functions pg_rewind calls on its source (PostgreSQL's documented non-superuser set).
pub const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_ls_dir(text, boolean, boolean)",
    "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)",
    "pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// The standbys' role may read the data directory's files through SQL, which pg_rewind needs
/// when a former primary rejoins (it can already copy all of them with pg_basebackup).
pub fn rewind_grants(ctx: &Ctx) -> Step<'_> {
    let user = ctx.cluster.replication.user.as_str();
    grants(
        ctx,
        user,
        REWIND_FUNCTIONS.to_vec(),
        Vec::new(),
        "may be pg_rewind's source (file functions, not superuser)",
    )
}

/// The monitoring role (postgres_exporter's login) is a member of `pg_monitor`, nothing more.
pub fn monitor_grants(ctx: &Ctx) -> Step<'_> {
    grants(
        ctx,
        pgnode_core::config::Cluster::MONITOR_USER,
        Vec::new(),
        vec!["pg_monitor"],
        "may read statistics (pg_monitor, not superuser)",
    )
}

fn grants<'a>(
    ctx: &'a Ctx,
    user: &'a str,
    functions: Vec<&'static str>,
    roles: Vec<&'static str>,
    what: &str,
) -> Step<'a> {
    let mut checks: Vec<String> = functions
        .iter()
        .map(|f| format!("has_function_privilege('{user}', '{f}', 'EXECUTE')"))
        .collect();
    checks.extend(
        roles
            .iter()
            .map(|r| format!("pg_has_role('{user}', '{r}', 'MEMBER')")),
    );
    let query = format!("SELECT {};", checks.join(", "));
    let mut grants: Vec<String> = functions
        .iter()
        .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {user};"))
        .collect();
    grants.extend(roles.iter().map(|r| format!("GRANT {r} TO {user};")));
    let grants = grants.join("\n");
    let names: Vec<String> = functions
        .iter()
        .chain(roles.iter())
        .map(|s| s.to_string())
        .collect();
    Step::change(
        format!("{user} {what}"),
        move || {
            let rows = pg::query(&pg::local(ctx, &query))?;
            let row = rows.first().ok_or_else(|| Error::Parse {
                what: query.clone(),
                detail: "no row".into(),
            })?;
            let missing: Vec<&str> = row
                .iter()
                .zip(&names)
                .filter(|(v, _)| *v != "t")
                .map(|(_, n)| n.as_str())
                .collect();
            Ok(if missing.is_empty() {
                Check::Ok
            } else {
                Check::Needs(format!("missing: {}", missing.join(", ")))
            })
        },
        move || {
            pg::local(ctx, &grants).run()?;
            Ok(())
        },
    )
}

/// The state of a slot: None when missing, else (type, wal_status, active).
fn slot_state(ctx: &Ctx, name: &str) -> pgnode_core::Result<Option<(String, String, bool)>> {
    // wal_status exists from PostgreSQL 13; before that a slot cannot be invalidated.
    let wal_status = if ctx.major.get() >= 13 {
        "coalesce(wal_status, '')"
    } else {
        "''"
    };
    let q = format!("SELECT slot_type, {wal_status}, active FROM pg_replication_slots WHERE slot_name = '{name}';");
    Ok(pg::query(&pg::local(ctx, &q))?
        .first()
        .map(|r| (r[0].clone(), r[1].clone(), r[2] == "t")))
}

/// A usable physical replication slot exists: created reserving WAL (so nothing is lost between
/// now and its consumer's first connection) when missing, and re-created when
/// `max_slot_wal_keep_size` invalidated it (`wal_status = 'lost'`): its consumer must then be
/// re-cloned (`pgnode --role slave --reclone`) or reset (`barman receive-wal --reset`).
pub fn slot<'a>(ctx: &'a Ctx, name: &'a str) -> Step<'a> {
    Step::change(
        format!("replication slot {name}"),
        move || {
            Ok(match slot_state(ctx, name)? {
                None => Check::Needs("does not exist".into()),
                Some((t, _, _)) if t != "physical" => Check::Needs(format!("exists but is {t}")),
                Some((_, w, _)) if w == "lost" => Check::Needs("invalidated (wal_status lost): its consumer fell behind max_slot_wal_keep_size".into()),
                Some(_) => Check::Ok,
            })
        },
        move || {
            match slot_state(ctx, name)? {
                Some((t, _, _)) if t != "physical" => {
                    return Err(Error::Refused(format!(
                        "slot {name} is a {t} slot: pgnode will not drop it; drop it by hand"
                    )))
                }
                Some((_, _, true)) => {
                    return Err(Error::Refused(format!(
                        "slot {name} is invalidated but still active: stop its consumer first"
                    )))
                }
                Some(_) => {
                    pg::local(ctx, &format!("SELECT pg_drop_replication_slot('{name}');")).run()?;
                }
                None => {}
            }
            pg::local(
                ctx,
                &format!("SELECT pg_create_physical_replication_slot('{name}', true);"),
            )
            .run()?;
            Ok(())
        },
    )
}
