//! Authentication and pg_hba: wrong passwords are refused, users are refused from hosts they do
//! not belong to, secret files are 0600, and no `host*` line trusts a network address.

use crate::text::and_list;
use crate::{ensure, fail, Ctx, Node, Result};

/// Secret files pgnode may write (public keys excluded), listed with mode, owner and path.
const SECRET_MODES: &str = r#"for p in /root/.pgpass /var/lib/postgresql/.pgpass /var/lib/barman/.pgpass \
  /var/lib/postgresql/.ssh/id_* /var/lib/barman/.ssh/id_*; do
  [ -e "$p" ] && case $p in *.pub) ;; *) stat -c "%a %U %n" "$p" ;; esac
done
true"#;

/// A connection with a wrong password. Ok(error text) when refused; Err when it logged in.
fn refused(node: &Node, conninfo: &str, sql: &str, who: &str) -> Result<String> {
    let argv = [
        "env",
        "PGPASSWORD=wrong-password",
        "PGPASSFILE=/dev/null",
        "PGCONNECT_TIMEOUT=5",
        "psql",
        "-XAtqw",
        "-d",
        conninfo,
        "-c",
        sql,
    ];
    let out = node.run(&argv)?;
    if out.success() {
        return fail(
            format!("{who} logged in with a wrong password"),
            out.combined(),
        );
    }
    Ok(out.combined())
}

/// The first line with everything up to the last `FATAL:` removed.
fn fatal(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    first
        .rfind("FATAL:")
        .map_or(first, |i| first[i + 6..].trim_start())
        .to_string()
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let c = &cx.cluster.config;
    let primary = cx.cluster.primary();
    let (backup, standbys) = (cx.cluster.backup(), cx.cluster.standbys());
    let Some(standby) = standbys.first().copied() else {
        return fail("the config has no standby", "");
    };
    let (repl, barman) = (c.replication.user.as_str(), c.barman.user.as_str());
    let host = format!("host={} port={}", primary.address, c.postgresql.port);
    let repl_conn = format!("{host} user={repl} dbname=replication replication=true");
    let barman_conn = format!("{host} user={barman} dbname=postgres");
    for (node, conn, sql, user) in [
        (standby, &repl_conn, "IDENTIFY_SYSTEM", repl),
        (backup, &barman_conn, "select 1", barman),
    ] {
        let out = refused(node, conn, sql, &format!("{user} from {node}"))?;
        ensure(
            out.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            format!("wrong password for {user} from {node}: not an authentication error"),
            &out,
        )?;
        cx.note(format!(
            "wrong password ({user} from {node}): {}",
            fatal(&out)
        ));
    }
    let out = refused(
        backup,
        &repl_conn,
        "IDENTIFY_SYSTEM",
        &format!("{repl} for replication from {backup}"),
    )?;
    ensure(
        out.contains("no pg_hba.conf entry"),
        format!("{repl} from {backup}: not refused by pg_hba"),
        &out,
    )?;
    cx.note(format!(
        "{repl} replication from {backup}: no pg_hba.conf entry"
    ));
    let out = refused(
        standby,
        &barman_conn,
        "select 1",
        &format!("{barman} from {standby}"),
    )?;
    ensure(
        out.contains("no pg_hba.conf entry"),
        format!("{barman} from {standby}: not refused by pg_hba"),
        &out,
    )?;
    cx.note(format!(
        "{barman} to postgres from {standby}: no pg_hba.conf entry"
    ));
    secret_modes(cx)?;
    no_trust(cx)
}

fn secret_modes(cx: &Ctx) -> Result<()> {
    let secrets = cx.cluster.target().layout().secrets;
    let primary = cx.cluster.primary();
    let out = primary.run(&["stat", "-c", "%a %U %n", &secrets])?;
    ensure(out.success(), format!("no {secrets}"), out.combined())?;
    ensure(
        out.stdout.starts_with("600 "),
        format!("{secrets} is not mode 0600"),
        &out.stdout,
    )?;
    for n in cx.cluster.nodes() {
        let out = n.ok(&["bash", "-c", SECRET_MODES])?;
        if out.lines().any(|l| !l.starts_with("600 ")) {
            return fail(format!("secret files on {n} not mode 0600"), out);
        }
        let paths: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(2)).collect();
        if !paths.is_empty() {
            cx.note(format!("{n}: {} 0600", paths.join(" ")));
        }
    }
    Ok(())
}

fn no_trust(cx: &Ctx) -> Result<()> {
    let mut pg = vec![cx.cluster.primary()];
    pg.extend(cx.cluster.standbys());
    for n in &pg {
        let hba = n.sql("postgres", "show hba_file")?;
        let content = n.file(&hba)?;
        let bad: Vec<&str> = content.lines().filter(|l| trusts_network(l)).collect();
        if !bad.is_empty() {
            return fail(
                format!("{n}: {hba} trusts a network address"),
                bad.join("\n"),
            );
        }
    }
    let names: Vec<&str> = pg.iter().map(|n| n.name.as_str()).collect();
    cx.note(format!(
        "no host* line with trust in pg_hba on {}",
        and_list(&names)
    ));
    Ok(())
}

/// A `host`, `hostssl`, `hostnossl`... line whose method is `trust`.
fn trusts_network(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next().is_some_and(|w| w.starts_with("host")) && words.any(|w| w == "trust")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_lines() {
        assert!(trusts_network("host all all 10.0.0.0/8 trust"));
        assert!(trusts_network("  hostssl\tall all 0.0.0.0/0  trust"));
        assert!(!trusts_network("local all postgres peer"));
        assert!(!trusts_network("local all all trust"));
        assert!(!trusts_network(
            "host replication streaming_user 192.168.11.102/32 scram-sha-256"
        ));
        assert!(!trusts_network("# host all all 0.0.0.0/0 trust"));
    }

    #[test]
    fn fatal_text() {
        let out = "psql: error: connection to server at \"192.168.11.101\", port 5432 failed: FATAL:  password authentication failed for user \"barman\"\nmore";
        assert_eq!(
            fatal(out),
            "password authentication failed for user \"barman\""
        );
    }
}
