//! Drift: a hand edit of a file pgnode owns. `--dry-run` shows it as a diff and changes nothing;
//! the role then puts the file back and reloads (a comment needs no restart); a rerun changes
//! nothing.

use crate::text::{last_line, squeeze};
use crate::{ensure, Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let primary = cx.cluster.primary();
    let role = primary.role.as_str();
    let conf = format!(
        "/etc/postgresql/{}/main/conf.d/pgnode.conf",
        primary.major()?
    );
    let start_before = primary.sql("postgres", "select pg_postmaster_start_time()")?;
    primary.ok(&["sh", "-c", "echo '# e2e drift' >>\"$1\"", "append", &conf])?;
    let out = primary.pgnode(&["--role", role, "--dry-run"])?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("pgnode --dry-run failed on {primary}"),
        &text,
    )?;
    let want = format!("would change  file {conf}");
    let Some(line) = text.lines().find(|l| l.contains(&want)) else {
        return crate::fail(format!("--dry-run does not report the edited {conf}"), text);
    };
    ensure(
        text.contains("- # e2e drift"),
        "--dry-run shows no diff line for the edit",
        &text,
    )?;
    ensure(
        primary.file(&conf)?.contains("# e2e drift"),
        format!("--dry-run changed {conf}"),
        "",
    )?;
    cx.note(format!("dry run: {} (file untouched)", squeeze(line)));
    let out = primary.pgnode(&["--role", role])?;
    let text = out.combined();
    ensure(
        out.success(),
        format!("pgnode --role {role} failed to repair {conf}"),
        &text,
    )?;
    ensure(
        !primary.file(&conf)?.contains("# e2e drift"),
        format!("the role did not restore {conf}"),
        &text,
    )?;
    ensure(
        text.contains("changed  postgresql runs with the settings in its files"),
        format!("the role did not reload PostgreSQL after restoring {conf}"),
        &text,
    )?;
    let start_after = primary.sql("postgres", "select pg_postmaster_start_time()")?;
    ensure(
        start_after == start_before,
        "restoring a comment restarted PostgreSQL",
        format!("{start_before} -> {start_after}"),
    )?;
    cx.note(format!(
        "repair: {}, reloaded, not restarted",
        last_line(&out.stdout)
    ));
    let out = primary.pgnode(&["--role", role])?;
    ensure(
        last_line(&out.stdout).contains("changed=0 failed=0"),
        "the run after the repair changed something",
        out.combined(),
    )
}
