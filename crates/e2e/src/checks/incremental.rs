//! Incremental backups: on PostgreSQL >= 17 (Barman >= 3.11) an incremental backup after a 1%
//! change is DONE, smaller than the full one before it, and the drill restores the chain; below
//! 17 both Barman and pgnode refuse them.

use crate::checks::drill::{drill, drilled_backup, fresh_backup};
use crate::text::{flat, last_line};
use crate::{ensure, Ctx, Node, Result};

const SCRATCH: &str = "/tmp/pgnode-e2e-incremental";

/// A copy of the config with `barman.incremental_schedule` set, and the secrets beside it.
const COPY: &str = r#"set -e
rm -rf "$1" && mkdir -m 0700 "$1" && cp -p /vagrant/config/secrets.json "$1/"
sed 's/"backup_schedule": *"[^"]*"/&, "incremental_schedule": "0 3 * * 1-6"/' /vagrant/config/cluster.json >"$1/cluster.json"
grep -q incremental_schedule "$1/cluster.json""#;

pub fn run(cx: &mut Ctx) -> Result<()> {
    let (primary, backup) = (cx.cluster.primary(), cx.cluster.backup());
    let server = cx.cluster.config.barman.server.as_str();
    let major = primary.major()?;
    if major < 17 {
        return refused(cx, backup, server, major);
    }
    let on = primary.sql("postgres", "show summarize_wal")?;
    ensure(on == "on", "summarize_wal is not on on the master", on)?;
    primary.sql(
        "postgres",
        "create table if not exists e2e_incr (id int primary key, v int not null default 0)",
    )?;
    primary.sql(
        "postgres",
        "insert into e2e_incr select g from generate_series(1, 200000) g on conflict do nothing",
    )?;
    let full = fresh_backup(primary, backup, server, &[])?;
    primary.sql(
        "postgres",
        "update e2e_incr set v = v + 1 where id % 100 = 0",
    )?;
    let incr = fresh_backup(primary, backup, server, &["--incremental", "latest"])?;
    let show = backup.barman(&["show-backup", server, &incr])?.combined();
    ensure(
        show.to_lowercase().contains("incremental"),
        format!("backup {incr} is not incremental"),
        &show,
    )?;
    let size = |id: &str| -> Result<u64> {
        let out = backup.ok(&["du", "-sb", &format!("/var/lib/barman/{server}/base/{id}")])?;
        Ok(out
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    };
    let (fs, is) = (size(&full)?, size(&incr)?);
    ensure(
        is > 0 && is < fs,
        format!("incremental backup {incr} ({is} bytes) is not smaller than the full {full} ({fs} bytes)"),
        &show,
    )?;
    cx.note(format!(
        "full {full} {} MB, incremental {incr} after a 1% change {} MB",
        fs / 1_000_000,
        is / 1_000_000
    ));
    let out = drill(backup)?;
    ensure(
        out.success() && drilled_backup(&out.stdout).as_deref() == Some(incr.as_str()),
        format!("the drill did not pass on the incremental backup {incr}"),
        out.combined(),
    )?;
    cx.note(format!(
        "the drill restored the chain {full} + {incr} and passed"
    ));
    Ok(())
}

fn refused(cx: &Ctx, backup: &Node, server: &str, major: u16) -> Result<()> {
    let out = backup.barman(&["backup", "--incremental", "latest", server])?;
    ensure(
        !out.success(),
        format!("Barman took an incremental backup on PostgreSQL {major}"),
        out.combined(),
    )?;
    cx.note(format!(
        "PostgreSQL {major}: barman backup --incremental refused: {}",
        last_line(out.combined().trim_end())
    ));
    backup.ok(&["bash", "-c", COPY, "copy", SCRATCH])?;
    let cfg = format!("{SCRATCH}/cluster.json");
    let out = backup.run(&["pgnode", "--role", "backup", "--dry-run", "--config", &cfg])?;
    let _ = backup.run(&["rm", "-rf", SCRATCH]);
    ensure(
        !out.success()
            && out
                .combined()
                .contains("incremental backups need PostgreSQL >= 17"),
        format!("pgnode does not refuse barman.incremental_schedule on PostgreSQL {major}"),
        flat(&out.combined()),
    )?;
    cx.note(format!(
        "PostgreSQL {major}: pgnode refuses barman.incremental_schedule (needs 17)"
    ));
    Ok(())
}
