//! Talking to PostgreSQL: psql as the local `postgres` superuser over the socket (peer auth),
//! psql to a remote node with a passfile, `pg_lsclusters` and `pg_controldata`. SQL always
//! travels on stdin, so neither statements nor passwords appear in argv.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::Ctx;

/// Field separator for psql's unaligned output (a control character no value contains).
pub const SEP: &str = "\u{1f}";

/// psql's flags for scripts: no psqlrc, quiet, unaligned, tuples only, stop on the first error,
/// [`SEP`]-separated fields, SQL from stdin.
pub fn psql_args(cmd: Cmd) -> Cmd {
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-F",
        SEP,
        "-f",
        "-",
    ])
}

/// psql as the local superuser `postgres` on the local cluster.
pub fn local(ctx: &Ctx, sql: &str) -> Cmd {
    psql_args(Cmd::new("psql").user("postgres").args([
        "-p",
        &ctx.port().to_string(),
        "-d",
        "postgres",
    ]))
    .stdin(sql)
}

/// Runs `f` with a passfile holding `line` (a .pgpass line), in a private directory (0700,
/// file 0600) removed afterwards: for a password that must not be in argv or the environment.
///
/// Errors: the directory or file cannot be written, or `f`'s error.
pub fn with_passfile<T>(line: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = std::env::temp_dir().join(format!("pgnode-pass-{}", crate::files::unique_suffix()));
    let werr = |source| Error::Write {
        path: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(werr)?;
    let file = dir.join("pgpass");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut fh| fh.write_all(line.as_bytes()));
    let result = match written {
        Ok(()) => f(&file),
        Err(e) => Err(werr(e)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// psql to a conninfo string as an OS user whose passfile holds the password.
pub fn remote(os_user: &str, conninfo: &str, passfile: &Path, sql: &str) -> Cmd {
    psql_args(
        Cmd::new("psql")
            .user(os_user)
            .env("PGPASSFILE", passfile.to_string_lossy())
            // The TLS handshake and SCRAM's 4096 PBKDF2 rounds on both ends: under software
            // emulation on a loaded host they outlasted 5 s (vagrant-test, twice).
            .env("PGCONNECT_TIMEOUT", "15")
            // Connections between nodes verify the server against the cluster CA.
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", crate::tls::CA_FILE)
            .args(["-d", conninfo]),
    )
    .stdin(sql)
}

/// Splits psql unaligned output into rows of fields.
pub fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(SEP).map(String::from).collect())
        .collect()
}

/// Runs a query and returns its rows.
///
/// Errors: the psql command with its stderr tail.
pub fn query(cmd: &Cmd) -> Result<Vec<Vec<String>>> {
    Ok(rows(&cmd.run()?.stdout))
}

/// When `e` is psql's exit status 2 (psql(1): "the connection to the server went bad"; a
/// connection refused or timed out as well), the last line of its stderr. Inside a bounded wait
/// that is an observation, not a final error: a server restarting, or answering slowly on a
/// loaded machine (a 5 s connect timeout expired between emulated VMs in CI), may answer at the
/// next attempt, and the wait's own bound still ends it.
pub fn connection_failed(e: &Error) -> Option<String> {
    match e {
        Error::Cmd(crate::exec::CmdError::Failed {
            cmd,
            status: 2,
            stderr,
        }) if cmd.split_whitespace().any(|w| w == "psql") => Some(
            stderr
                .lines()
                .last()
                .unwrap_or("")
                .trim_start_matches([' ', '|'])
                .to_string(),
        ),
        _ => None,
    }
}

/// Runs a query expected to return exactly one value.
///
/// Errors: psql's failure, or [`Error::Parse`] when not exactly one value came back.
pub fn scalar(cmd: &Cmd) -> Result<String> {
    let r = query(cmd)?;
    match r.as_slice() {
        [row] if row.len() == 1 => Ok(row[0].clone()),
        _ => Err(Error::Parse {
            what: cmd.to_string(),
            detail: format!("expected one value, got {r:?}"),
        }),
    }
}

/// Whether the local server accepts connections (`pg_isready`; its non-zero exit is a "no").
pub fn local_ready(ctx: &Ctx) -> Result<bool> {
    let out = Cmd::new(ctx.bin("pg_isready"))
        .args([
            "-q",
            "-h",
            "/var/run/postgresql",
            "-p",
            &ctx.port().to_string(),
        ])
        .probe()?;
    Ok(out.success())
}

/// One line of `pg_lsclusters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLine {
    pub version: String,
    pub name: String,
    pub port: u16,
    pub status: String,
    pub data_dir: String,
}

/// Parses `pg_lsclusters -h` output.
pub fn parse_lsclusters(out: &str) -> Vec<ClusterLine> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 {
                return None;
            }
            Some(ClusterLine {
                version: w[0].into(),
                name: w[1].into(),
                port: w[2].parse().ok()?,
                status: w[3].into(),
                data_dir: w[5].into(),
            })
        })
        .collect()
}

/// The local clusters (empty when postgresql-common is not installed yet).
pub fn clusters() -> Result<Vec<ClusterLine>> {
    let c = Cmd::new("pg_lsclusters").arg("-h");
    if c.resolve().is_err() {
        return Ok(Vec::new());
    }
    Ok(parse_lsclusters(&c.run()?.stdout))
}

/// `pg_controldata` of a data directory as key/value pairs.
///
/// Errors: the command's failure (e.g. not a data directory).
pub fn controldata(ctx: &Ctx, data_dir: &Path) -> Result<BTreeMap<String, String>> {
    let out = Cmd::new(ctx.bin("pg_controldata"))
        .user("postgres")
        .arg(data_dir.to_string_lossy())
        .run()?;
    Ok(parse_controldata(&out.stdout))
}

/// Parses `pg_controldata` output (run with LC_ALL=C).
pub fn parse_controldata(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A WAL position (`X/Y` as PostgreSQL prints it) as a number, comparable and subtractable.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// `(timeline, switch point)` lines of a timeline history file (`TL<TAB>X/Y<TAB>reason`);
/// lines that are not such (comments, blanks) are skipped.
pub fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli: u32 = f.next()?.parse().ok()?;
            Some((tli, parse_lsn(f.next()?)?))
        })
        .collect()
}

/// The value of `key` in a libpq conninfo string such as `primary_conninfo`
/// (`host=10.0.0.1 port=5432 ...`; pgnode never writes quoted values).
pub fn conninfo_value<'a>(conninfo: &'a str, key: &str) -> Option<&'a str> {
    conninfo
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('\''))
}

/// Replication (`replication=true`) or ordinary psql to another PostgreSQL node as the
/// standbys' user, with the postgres account's passfile.
pub fn peer(ctx: &Ctx, host: &str, replication: bool, sql: &str) -> Cmd {
    let c = &ctx.cluster;
    let mode = if replication {
        "dbname=replication replication=true"
    } else {
        "dbname=postgres"
    };
    let conninfo = format!(
        "host={host} port={} user={} {mode} application_name=pgnode",
        ctx.port(),
        c.replication.user
    );
    remote(
        "postgres",
        &conninfo,
        Path::new(&crate::render::postgres_pgpass()),
        sql,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_psql_connection_failures_are_transient() {
        use crate::exec::CmdError;
        let failed = |cmd: &str, status| {
            Error::Cmd(CmdError::Failed {
                cmd: cmd.into(),
                status,
                stderr: "  | psql: error: connection to server at \"192.168.11.101\", port 5432 failed: timeout expired".into(),
            })
        };
        let psql =
            "runuser -u barman -- PGCONNECT_TIMEOUT=5 psql -d 'host=192.168.11.101' -f - <<stdin";
        assert_eq!(
            connection_failed(&failed(psql, 2)).as_deref(),
            Some("psql: error: connection to server at \"192.168.11.101\", port 5432 failed: timeout expired")
        );
        // 1: psql's own fatal error; 3: the SQL failed (ON_ERROR_STOP): final.
        assert_eq!(connection_failed(&failed(psql, 1)), None);
        assert_eq!(connection_failed(&failed(psql, 3)), None);
        assert_eq!(connection_failed(&failed("barman check master", 2)), None);
        assert_eq!(connection_failed(&Error::Refused("x".into())), None);
    }

    #[test]
    fn lsns_and_conninfo() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x3000060));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert_eq!(parse_lsn("nope"), None);
        let ci =
            "host=192.168.11.101 port=5432 user=streaming_user passfile=/x application_name=slave";
        assert_eq!(conninfo_value(ci, "host"), Some("192.168.11.101"));
        assert_eq!(conninfo_value(ci, "dbname"), None);
    }

    #[test]
    fn parses_tools_output() {
        let ls = "15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n15 other 5433 down,recovery postgres /srv/x /log\n";
        let c = parse_lsclusters(ls);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].port, c[0].status.as_str(), c[0].data_dir.as_str()),
            (5432, "online", "/var/lib/postgresql/15/main")
        );
        assert_eq!(c[1].status, "down,recovery");
        let cd = parse_controldata("pg_control version number:            1300\nDatabase system identifier:           7312345678901234567\nDatabase cluster state:               in production\n");
        assert_eq!(cd["Database system identifier"], "7312345678901234567");
        assert_eq!(cd["Database cluster state"], "in production");
        assert_eq!(
            rows("a\u{1f}b\n\nc\u{1f}\n"),
            vec![vec!["a", "b"], vec!["c", ""]]
        );
    }
}
