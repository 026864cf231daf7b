//! Rerunning every role changes nothing: same files, same bytes, same modes, no restart.

use crate::text::{and_list, last_line, tail};
use crate::{ensure, fail, Ctx, Node, Result};

/// sha256, mode and owner of every file pgnode may write on a node.
const FINGERPRINT: &str = r#"shopt -s nullglob
{ find /etc/postgresql /etc/barman.conf /etc/barman.d /etc/cron.d /var/lib/postgresql/.ssh \
    /var/lib/postgresql/.pgpass /var/lib/barman/.ssh /var/lib/barman/.pgpass \
    -type f 2>/dev/null
  for f in /var/lib/postgresql/*/main/standby.signal /var/lib/postgresql/*/main/postgresql.auto.conf; do echo "$f"; done
} | sort -u | while read -r f; do
  printf "%s %s %s\n" "$(sha256sum <"$f" | cut -c1-64)" "$(stat -c "%a %U:%G" "$f")" "$f"
done"#;

fn fingerprint(n: &Node) -> Result<String> {
    n.ok(&["bash", "-c", FINGERPRINT])
}

fn start_time(n: &Node) -> Result<String> {
    n.sql("postgres", "select pg_postmaster_start_time()")
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let nodes = cx.cluster.nodes();
    let mut pg = vec![cx.cluster.primary()];
    pg.extend(cx.cluster.standbys());
    let before: Vec<String> = nodes
        .iter()
        .map(|n| fingerprint(n))
        .collect::<Result<_>>()?;
    let started: Vec<String> = pg.iter().map(|n| start_time(n)).collect::<Result<_>>()?;
    for n in &nodes {
        let role = n.role.as_str();
        let out = n.provision()?;
        ensure(
            out.success(),
            format!("rerun of guest.sh {role} on {n} exited non-zero"),
            format!("{}\n{}", out.stdout.trim_end(), tail(&out.stderr, 20)),
        )?;
        let last = last_line(&out.stdout);
        ensure(
            recap_unchanged(last, role),
            format!("rerun on {n}: the recap is not changed=0 failed=0"),
            &out.stdout,
        )?;
        cx.note(format!("{n}: {last}"));
    }
    for (n, before) in nodes.iter().zip(&before) {
        let after = fingerprint(n)?;
        if &after != before {
            return fail(
                format!("files changed on {n} by a rerun"),
                diff(before, &after),
            );
        }
        cx.note(format!("{n}: {} files identical", after.lines().count()));
    }
    for (n, before) in pg.iter().zip(&started) {
        let after = start_time(n)?;
        ensure(
            &after == before,
            format!("PostgreSQL on {n} restarted during the rerun"),
            format!("before: {before}, after: {after}"),
        )?;
    }
    let names: Vec<&str> = pg.iter().map(|n| n.name.as_str()).collect();
    cx.note(format!("PostgreSQL not restarted on {}", and_list(&names)));
    Ok(())
}

/// `recap: role=ROLE ok=N changed=0 failed=0 elapsed=Xs`, pgnode's last line on a converged node.
pub fn recap_unchanged(line: &str, role: &str) -> bool {
    let Some(rest) = line.strip_prefix("recap: ") else {
        return false;
    };
    let field = |k: &str| {
        rest.split(' ')
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    field("role") == Some(role) && field("changed") == Some("0") && field("failed") == Some("0")
}

/// Lines only before (`<`) and only after (`>`).
fn diff(before: &str, after: &str) -> String {
    let gone = before
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .map(|l| format!("< {l}"));
    let new = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(|l| format!("> {l}"));
    gone.chain(new).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recap() {
        assert!(recap_unchanged(
            "recap: role=master ok=18 changed=0 failed=0 elapsed=0.6s",
            "master"
        ));
        assert!(!recap_unchanged(
            "recap: role=master ok=18 changed=1 failed=0 elapsed=0.6s",
            "master"
        ));
        assert!(!recap_unchanged(
            "recap: role=master ok=18 changed=0 failed=0 elapsed=0.6s",
            "slave"
        ));
        assert!(!recap_unchanged(
            "recap: role=master ok=18 changed=10 failed=0",
            "master"
        ));
        assert!(!recap_unchanged("changed=0 failed=0", "master"));
    }

    #[test]
    fn diff_lines() {
        assert_eq!(diff("a 1\nb 2\n", "a 1\nb 3\n"), "< b 2\n> b 3");
    }
}
