//! Bad input on a converged node. Promise: a real converge (not a dry run) with a bad config,
//! bad secrets, the wrong role, as a non-root user or with a missing config exits 2 with a
//! message naming the problem, changes no file pgnode owns (checksums before and after) and
//! neither restarts nor reloads PostgreSQL. Prints `N bad inputs refused`.

use serde_json::{json, Value};

use crate::{ensure, fail, Ctx, Node, Result};

const DIR: &str = "/tmp/pgnode-bad-config";

/// How a case damages the good setup.
enum Bad {
    Text(fn(&str) -> String),
    Json(fn(&mut Value)),
    Secrets(fn(&str) -> String, &'static str),
    WrongRole,
    NotRoot,
    NoConfig,
}

fn cases() -> Vec<(&'static str, Bad, &'static str)> {
    use Bad::*;
    vec![
        (
            "malformed JSON",
            Text(|t| t[..t.len() / 2].to_string()),
            "not valid JSON",
        ),
        (
            "port as a string",
            Json(|v| v["postgresql"]["port"] = json!("5432")),
            "postgresql.port: must be a whole number",
        ),
        (
            "unknown top-level key",
            Json(|v| v["colour"] = json!("blue")),
            "colour: unknown key",
        ),
        (
            "unknown barman key",
            Json(|v| v["barman"]["retention"] = json!("x")),
            "barman.retention: unknown key",
        ),
        (
            "duplicate address",
            Json(|v| v["nodes"][2]["address"] = v["nodes"][1]["address"].clone()),
            "duplicate address",
        ),
        (
            "two masters",
            Json(|v| v["nodes"][1]["role"] = json!("master")),
            "2 nodes have role master",
        ),
        (
            "slot PostgreSQL rejects",
            Json(|v| v["nodes"][1]["slot"] = json!("Pg-Slot")),
            "is not a valid replication slot name",
        ),
        (
            "user named postgres",
            Json(|v| v["replication"]["user"] = json!("postgres")),
            "\"postgres\" is not a usable role name",
        ),
        (
            "cron minute 61",
            Json(|v| v["barman"]["backup_schedule"] = json!("61 3 * * *")),
            "61 is outside 0-59",
        ),
        (
            "retention Barman rejects",
            Json(|v| v["barman"]["retention_policy"] = json!("KEEP 3")),
            "barman.retention_policy",
        ),
        (
            "port 70000",
            Json(|v| v["postgresql"]["port"] = json!(70000)),
            "70000 is not a port",
        ),
        (
            "major 18",
            Json(|v| v["postgresql"]["major"] = json!(18)),
            "18 is not a supported PostgreSQL major",
        ),
        (
            "binary older than min_pgnode",
            Json(|v| v["min_pgnode"] = json!("99.0.0")),
            "needs pgnode 99.0.0 or newer",
        ),
        (
            "secrets corrupt",
            Secrets(|_| "{\"version\": 1, garbage".into(), "600"),
            "not a pgnode secrets file",
        ),
        (
            "secrets truncated",
            Secrets(|s| s[..s.len() / 2].to_string(), "600"),
            "not a pgnode secrets file",
        ),
        (
            "secrets missing a user",
            Secrets(|s| s.replacen("\"barman\":", "\"someone\":", 1), "600"),
            "no password for role \"barman\"",
        ),
        (
            "secrets readable by others",
            Secrets(|s| s.to_string(), "644"),
            "must be 0600",
        ),
        (
            "wrong role for this host",
            WrongRole,
            "refusing to run role",
        ),
        ("not root", NotRoot, "must run as root"),
        ("config path that does not exist", NoConfig, "cannot read"),
    ]
}

/// Checksums of every file pgnode owns on the primary, the config and the secrets.
fn owned_files(primary: &Node, cx: &Ctx) -> Result<String> {
    let major = primary.major()?;
    let layout = cx.cluster.target().layout();
    let files = [
        format!("/etc/postgresql/{major}/main/conf.d/pgnode.conf"),
        format!("/etc/postgresql/{major}/main/pg_hba.conf"),
        "/etc/ssl/pgnode/ca.crt".into(),
        "/etc/ssl/pgnode/server.crt".into(),
        "/etc/ssl/pgnode/server.key".into(),
        "/var/lib/postgresql/.ssh/id_ed25519".into(),
        "/var/lib/postgresql/.ssh/known_hosts".into(),
        "/var/lib/postgresql/.ssh/config".into(),
        layout.config,
        layout.secrets,
    ];
    let mut argv = vec!["sha256sum"];
    argv.extend(files.iter().map(String::as_str));
    primary.ok(&argv)
}

fn server_times(primary: &Node) -> Result<String> {
    primary.sql(
        "postgres",
        "SELECT pg_postmaster_start_time() || ' / ' || pg_conf_load_time()",
    )
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let primary = cx.cluster.primary();
    let layout = cx.cluster.target().layout();
    let config = primary.file(&layout.config)?;
    let secrets = primary.file(&layout.secrets)?;
    let (sums, times) = (owned_files(primary, cx)?, server_times(primary)?);
    let all = cases();
    let mut refused = 0;
    for (i, (name, bad, says)) in all.iter().enumerate() {
        let dir = format!("{DIR}/{i}");
        let cfg = format!("{dir}/cluster.json");
        setup(primary, &dir, &config, &secrets, bad)?;
        let out = match bad {
            Bad::WrongRole => primary.run(&["pgnode", "--role", "slave", "--config", &cfg])?,
            Bad::NotRoot => {
                primary.run_as("nobody", &["pgnode", "--role", "master", "--config", &cfg])?
            }
            Bad::NoConfig => primary.run(&[
                "pgnode",
                "--role",
                "master",
                "--config",
                &format!("{dir}/nowhere.json"),
            ])?,
            _ => primary.run(&["pgnode", "--role", "master", "--config", &cfg])?,
        };
        ensure(
            out.code == Some(2) && out.stderr.contains(says),
            format!(
                "{name}: not refused with exit 2 and a message containing {says:?} (exit {:?})",
                out.code
            ),
            out.combined(),
        )?;
        refused += 1;
    }
    let _ = primary.run(&["rm", "-rf", DIR]);
    let after = owned_files(primary, cx)?;
    if after != sums {
        return fail(
            "a file pgnode owns changed during the bad runs",
            format!("before:\n{sums}\nafter:\n{after}"),
        );
    }
    let times_after = server_times(primary)?;
    ensure(
        times_after == times,
        "PostgreSQL was restarted or reloaded",
        format!("{times} -> {times_after}"),
    )?;
    cx.note(format!(
        "{} files pgnode owns unchanged; postmaster start and config load time unchanged ({times})",
        sums.lines().count()
    ));
    cx.note(format!("{refused} bad inputs refused"));
    Ok(())
}

/// `DIR/cluster.json` and `DIR/secrets.json` (0600 unless the case says otherwise).
fn setup(primary: &Node, dir: &str, config: &str, secrets: &str, bad: &Bad) -> Result<()> {
    let (mut cfg, mut sec, mut mode) = (config.to_string(), secrets.to_string(), "600");
    match bad {
        Bad::Text(f) => cfg = f(config),
        Bad::Json(patch) => {
            let mut v: Value = serde_json::from_str(config)
                .map_err(|e| crate::Failure::new("the node's config is not JSON", e.to_string()))?;
            patch(&mut v);
            cfg = v.to_string();
        }
        Bad::Secrets(f, m) => (sec, mode) = (f(secrets), *m),
        _ => {}
    }
    // World-readable directory (the non-root case reads the config); the secrets stay 0600.
    primary.ok(&["install", "-d", "-m", "755", dir])?;
    write(
        primary,
        &format!("{dir}/cluster.json"),
        cfg.as_bytes(),
        "644",
    )?;
    write(
        primary,
        &format!("{dir}/secrets.json"),
        sec.as_bytes(),
        mode,
    )
}

fn write(node: &Node, path: &str, bytes: &[u8], mode: &str) -> Result<()> {
    node.ok(&["install", "-m", "600", "/dev/null", path])?;
    let out = node.run_stdin(&["dd", &format!("of={path}"), "status=none"], bytes)?;
    ensure(
        out.success(),
        format!("cannot write {path}"),
        out.combined(),
    )?;
    node.ok(&["chmod", mode, path])?;
    Ok(())
}
