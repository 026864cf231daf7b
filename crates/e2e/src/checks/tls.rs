//! Encrypted and verified connections between nodes. Promises: a plain (non-TLS) connection is
//! refused by pg_hba; the standby and Barman stream over TLS and verify the primary
//! (`sslmode=verify-full` with the cluster CA); a server presenting another certificate (a
//! throwaway server with a self-signed one, for the primary's own name and address) is refused
//! by the standby's own conninfo; and an address of the subnet that is not a cluster node (the
//! lab's bridge) is refused for every user, replication included.

use std::path::PathBuf;
use std::process::Command;

use crate::{ensure, fail, Ctx, Node, Output, Result};

/// The throwaway server's port and directory on the primary.
const IMPOSTOR_PORT: &str = "5499";
const IMPOSTOR_DIR: &str = "/tmp/pgnode-tls-impostor";

pub fn run(cx: &mut Ctx) -> Result<()> {
    plain_refused(cx)?;
    streams_encrypted(cx)?;
    impostor_refused(cx)?;
    outsider_refused(cx)
}

fn psql(node: &Node, user: &str, conninfo: &str, sql: &str) -> Result<Output> {
    node.run_as(
        user,
        &[
            "env",
            "PGCONNECT_TIMEOUT=10",
            "psql",
            "-XAtqw",
            "-d",
            conninfo,
            "-c",
            sql,
        ],
    )
}

fn plain_refused(cx: &Ctx) -> Result<()> {
    let c = &cx.cluster.config;
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let standby = cx.cluster.standbys()[0];
    let host = format!("host={} port={}", primary.address, c.postgresql.port);
    let cases = [
        (
            backup,
            "barman",
            format!("{host} user={} dbname=postgres", c.barman.user),
            "select 1",
        ),
        (
            standby,
            "postgres",
            format!(
                "{host} user={} dbname=replication replication=true",
                c.replication.user
            ),
            "IDENTIFY_SYSTEM",
        ),
    ];
    for (node, os_user, conn, sql) in cases {
        let plain = psql(node, os_user, &format!("{conn} sslmode=disable"), sql)?;
        ensure(
            !plain.success()
                && plain.stderr.contains("no pg_hba.conf entry")
                && plain.stderr.contains("no encryption"),
            format!("a plain connection from {node} was not refused by pg_hba"),
            plain.combined(),
        )?;
        let tls = psql(
            node,
            os_user,
            &format!("{conn} sslmode=verify-full sslrootcert=/etc/ssl/pgnode/ca.crt"),
            sql,
        )?;
        ensure(
            tls.success(),
            format!("the same login over verified TLS from {node} fails"),
            tls.combined(),
        )?;
    }
    cx.note("sslmode=disable from backup and standby: no pg_hba.conf entry ... no encryption; the same logins with verify-full succeed");
    Ok(())
}

fn streams_encrypted(cx: &Ctx) -> Result<()> {
    let primary = cx.cluster.primary();
    let rows = primary.sql(
        "postgres",
        "SELECT r.application_name || ':' || s.ssl || ':' || coalesce(s.version, '') \
         FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) ORDER BY 1",
    )?;
    let want = cx.cluster.standbys().len() + 1;
    let lines: Vec<&str> = rows.lines().collect();
    ensure(
        lines.len() >= want && lines.iter().all(|l| l.contains(":true:TLSv")),
        format!("not every replication connection ({want} expected) uses TLS"),
        &rows,
    )?;
    for s in cx.cluster.standbys() {
        let ci = s.sql("postgres", "SHOW primary_conninfo")?;
        ensure(
            ci.contains("sslmode=verify-full"),
            format!("{s}: primary_conninfo does not verify"),
            ci,
        )?;
    }
    let server = &cx.cluster.config.barman.server;
    let conf = cx
        .cluster
        .backup()
        .file(&format!("/etc/barman.d/{server}.conf"))?;
    let verified = conf
        .lines()
        .filter(|l| l.contains("conninfo = ") && l.contains("sslmode=verify-full"))
        .count();
    ensure(
        verified == 2,
        "Barman's conninfo and streaming_conninfo do not both verify",
        conf,
    )?;
    cx.note(format!(
        "replication over TLS: {}; conninfos verify-full",
        lines.join(", ")
    ));
    Ok(())
}

fn impostor_refused(cx: &Ctx) -> Result<()> {
    let primary = cx.cluster.primary();
    let standby = cx.cluster.standbys()[0];
    let result = impostor_up(primary).and_then(|()| {
        let real = standby.sql("postgres", "SHOW primary_conninfo")?;
        let port = format!("port={}", cx.cluster.config.postgresql.port);
        ensure(real.contains(&port), "primary_conninfo names no port", &real)?;
        let fake = real.replace(&port, &format!("port={IMPOSTOR_PORT}"));
        let ok = psql(standby, "postgres", &format!("{real} dbname=replication replication=true"), "IDENTIFY_SYSTEM")?;
        ensure(ok.success(), "the standby's conninfo does not reach the real primary", ok.combined())?;
        let out = psql(standby, "postgres", &format!("{fake} dbname=replication replication=true"), "IDENTIFY_SYSTEM")?;
        ensure(
            !out.success() && out.stderr.contains("certificate verify failed"),
            "the standby's conninfo accepted a server with another certificate",
            out.combined(),
        )?;
        cx.note(format!(
            "a server on {}:{IMPOSTOR_PORT} with a self-signed certificate for the primary's own name and address: the standby's conninfo refuses it (certificate verify failed)",
            primary.address
        ));
        Ok(())
    });
    impostor_down(primary);
    result
}

fn impostor_up(primary: &Node) -> Result<()> {
    let major = primary.major()?;
    let bin = |b: &str| format!("/usr/lib/postgresql/{major}/bin/{b}");
    let addr = primary.address.to_string();
    let name = primary.name.clone();
    impostor_down(primary);
    let as_pg = |argv: &[&str]| -> Result<String> {
        let out = primary.run_as("postgres", argv)?;
        ensure(
            out.success(),
            format!("impostor server: {}", argv.join(" ")),
            out.combined(),
        )?;
        Ok(out.stdout)
    };
    as_pg(&["mkdir", "-m", "700", IMPOSTOR_DIR])?;
    let (key, crt, data) = (
        format!("{IMPOSTOR_DIR}/server.key"),
        format!("{IMPOSTOR_DIR}/server.crt"),
        format!("{IMPOSTOR_DIR}/data"),
    );
    as_pg(&[
        "openssl",
        "req",
        "-x509",
        "-noenc",
        "-days",
        "1",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        &format!("subjectAltName=IP:{addr},DNS:{name}"),
        "-keyout",
        &key,
        "-out",
        &crt,
    ])?;
    // Nothing may log in to it: every connection is rejected after the TLS handshake.
    as_pg(&[&bin("initdb"), "-D", &data, "--auth=reject", "--no-sync"])?;
    let opts = format!("-p {IMPOSTOR_PORT} -k {IMPOSTOR_DIR} -c listen_addresses={addr} -c ssl=on -c ssl_cert_file={crt} -c ssl_key_file={key}");
    as_pg(&[
        &bin("pg_ctl"),
        "-D",
        &data,
        "-l",
        &format!("{IMPOSTOR_DIR}/log"),
        "-w",
        "-t",
        "60",
        "-o",
        &opts,
        "start",
    ])?;
    Ok(())
}

/// Stops and removes the throwaway server (best effort: it may not exist).
fn impostor_down(primary: &Node) {
    if let Ok(major) = primary.major() {
        let pg_ctl = format!("/usr/lib/postgresql/{major}/bin/pg_ctl");
        let data = format!("{IMPOSTOR_DIR}/data");
        let _ = primary.run_as(
            "postgres",
            &[&pg_ctl, "-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
    let _ = primary.run(&["rm", "-rf", IMPOSTOR_DIR]);
}

/// The lab's own namespace (its bridge holds an address of the subnet that is no cluster
/// node): every user, replication included, finds no pg_hba line. Lab target only.
fn outsider_refused(cx: &Ctx) -> Result<()> {
    if cx.cluster.target().name() != "lab" {
        cx.note(format!(
            "non-node address not checked (target {} has no lab namespace)",
            cx.cluster.target().name()
        ));
        return Ok(());
    }
    let Some(lab) = lab_script() else {
        return fail("cannot find provision/lab beside the e2e binary", "");
    };
    let ns = local(&[lab.to_str().unwrap_or_default(), "netns"])?
        .stdout
        .trim()
        .to_string();
    let nsarg = format!("--net={ns}");
    let addrs = local(&["nsenter", &nsarg, "ip", "-4", "-o", "addr", "show"])?.stdout;
    let (net, prefix) = cx.cluster.subnet();
    let mask = u32::MAX << (32 - u32::from(prefix));
    let bridge = addrs
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| u32::from(*a) & mask == u32::from(net))
        .ok_or_else(|| {
            crate::Failure::new(
                "the lab namespace has no address in the subnet",
                addrs.clone(),
            )
        })?;
    let c = &cx.cluster.config;
    let primary = cx.cluster.primary();
    let host = format!("host={} port={}", primary.address, c.postgresql.port);
    let logins = [
        (c.barman.user.as_str(), "dbname=postgres", "select 1"),
        (
            c.replication.user.as_str(),
            "dbname=replication replication=true",
            "IDENTIFY_SYSTEM",
        ),
        (
            c.barman.streaming_user.as_str(),
            "dbname=replication replication=true",
            "IDENTIFY_SYSTEM",
        ),
        ("postgres", "dbname=postgres", "select 1"),
    ];
    for (user, db, sql) in logins {
        for ssl in ["require", "disable"] {
            let conn = format!("{host} user={user} {db} sslmode={ssl} connect_timeout=10");
            let out = local(&[
                "nsenter",
                &nsarg,
                "env",
                "PGPASSFILE=/nonexistent/pgnode-e2e",
                "psql",
                "-XAtqw",
                "-d",
                &conn,
                "-c",
                sql,
            ])?;
            ensure(
                !out.success()
                    && out.stderr.contains("no pg_hba.conf entry")
                    && out.stderr.contains(&format!("host \"{bridge}\"")),
                format!("{user} from the non-node address {bridge} (sslmode={ssl}) was not refused by pg_hba"),
                out.combined(),
            )?;
        }
    }
    cx.note(format!("from {bridge} (the lab bridge, not a node): barman, {}, {} (replication) and postgres refused, with and without TLS: no pg_hba.conf entry", c.replication.user, c.barman.streaming_user));
    Ok(())
}

fn lab_script() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|d| d.join("provision/lab"))
        .find(|p| p.is_file())
}

/// A command on this machine (the lab's namespace is entered with nsenter).
fn local(argv: &[&str]) -> Result<Output> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| crate::Failure::new(format!("cannot run {}", argv[0]), e.to_string()))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
