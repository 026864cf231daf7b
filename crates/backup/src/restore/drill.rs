//! `pgnode restore --drill`: restore the newest backup up to a fresh restore point and prove
//! the copy is usable: the server starts and leaves recovery, amcheck's `bt_index_check` passes
//! on every catalog index, the master's heartbeat row is no older than the restore point allows,
//! and `barman verify-backup` (pg_verifybackup against the backup manifest) passes. The result
//! goes to a small state file that `pgnode status` judges. The newest backup that passed is kept
//! with `barman keep`, so neither retention nor anything else deletes the last proven backup.

use std::path::Path;
use std::time::Instant;

use pgnode_core::common::now_epoch;
use pgnode_core::step::chain;
use pgnode_core::{pg, Ctx, Result};

use super::state::{self, DrillCheck, DrillState};
use super::{run_then, server, Outcome, Request, Sandbox, Target};
use crate::barman::{barman, query_master, switch_wal_archived};

/// The heartbeat's period on the master (its cron line runs every minute).
const HEARTBEAT_PERIOD: i64 = 60;
/// Slack on top of one period: cron start jitter and commit time.
const HEARTBEAT_SLACK: i64 = 60;

fn check(name: &str, r: Result<(bool, String)>) -> DrillCheck {
    let (ok, detail) = r.unwrap_or_else(|e| (false, chain(&e)));
    DrillCheck {
        name: name.into(),
        ok,
        detail,
    }
}

/// Makes a restore point on the master and gets the WAL holding it to Barman. Returns its
/// name and time; `None` when the master cannot be reached (the drill then restores all WAL
/// Barman has, and says so).
fn restore_point(ctx: &Ctx, started: u64) -> Result<(String, String)> {
    let name = format!("pgnode-drill-{started}");
    let at = pg::scalar(&query_master(
        ctx,
        &format!("SELECT clock_timestamp()::text FROM pg_create_restore_point('{name}');"),
    ))?;
    let server = ctx.cluster.barman.server.as_str();
    switch_wal_archived(server)?;
    Ok((name, at))
}

/// amcheck over every btree index of the catalog, in every database that takes connections.
fn amcheck(sb: &Sandbox, o: &Outcome) -> Result<(bool, String)> {
    let mut n = 0;
    for (db, _) in &o.found.databases {
        let count = pg::scalar(&server::psql_db(
            sb,
            db,
            "CREATE EXTENSION IF NOT EXISTS amcheck; \
             SELECT count(bt_index_check(c.oid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' \
             AND c.relnamespace = 'pg_catalog'::regnamespace;",
        ))?;
        n += count.parse::<u64>().unwrap_or(0);
    }
    Ok((
        n > 0,
        format!(
            "bt_index_check passed on {n} catalog indexes in {} databases",
            o.found.databases.len()
        ),
    ))
}

/// The heartbeat row is within one period (plus slack) of the restore point.
fn heartbeat(sb: &Sandbox, point_time: Option<&str>) -> Result<(bool, String)> {
    let Some(t) = point_time else {
        return Ok((
            false,
            "no restore point (the master was unreachable): cannot judge the heartbeat".into(),
        ));
    };
    let q = format!(
        "SELECT coalesce((SELECT extract(epoch FROM '{t}'::timestamptz - at)::bigint::text || ' ' || at::text \
         FROM pgnode_heartbeat WHERE id = 1), 'none') \
         FROM (SELECT to_regclass('pgnode_heartbeat') IS NOT NULL) x;"
    );
    let v = pg::scalar(&server::psql(sb, &q))?;
    let Some((age, at)) = v.split_once(' ') else {
        return Ok((
            false,
            "no heartbeat row in the copy (does the master role run the heartbeat?)".into(),
        ));
    };
    let age: i64 = age.parse().unwrap_or(i64::MAX);
    let max = HEARTBEAT_PERIOD + HEARTBEAT_SLACK;
    Ok((
        (0..=max).contains(&age),
        format!("heartbeat {at} is {age}s before the restore point (allowed {max}s)"),
    ))
}

/// `barman verify-backup` where Barman has it (pg_verifybackup needs PostgreSQL >= 13).
fn verify_backup(ctx: &Ctx, id: &str) -> Result<(bool, String)> {
    if !barman(&["verify-backup", "--help"]).probe()?.success() {
        return Ok((true, "not supported by this Barman: skipped".into()));
    }
    let out = barman(&["verify-backup", ctx.cluster.barman.server.as_str(), id]).probe()?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = last[last.len().saturating_sub(3)..].join(" | ");
    Ok((
        out.success() && text.contains("successfully verified"),
        tail,
    ))
}

/// The full backup an incremental one builds on (Barman >= 3.11 `root_backup_id`), or `id`.
fn chain_root(ctx: &Ctx, id: &str) -> Result<String> {
    let server = ctx.cluster.barman.server.as_str();
    let out = barman(&["-f", "json", "show-backup", server, id]).run()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    Ok(find_str(&v, "root_backup_id").unwrap_or_else(|| id.to_string()))
}

/// The first string value of `key` anywhere in `v`.
fn find_str(v: &serde_json::Value, key: &str) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .and_then(|x| x.as_str().map(String::from))
            .or_else(|| m.values().find_map(|x| find_str(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_str(x, key)),
        _ => None,
    }
}

/// Keeps the backup that just passed (for an incremental one, the full backup its chain starts
/// from: Barman keeps only full backups) and releases the one kept before it. Returns the kept id.
fn keep_passed(ctx: &Ctx, passed: &str, before: Option<&str>) -> Result<String> {
    let server = ctx.cluster.barman.server.as_str();
    let root = chain_root(ctx, passed)?;
    let id = root.as_str();
    barman(&["keep", "--target", "full", server, id]).run()?;
    if let Some(old) = before.filter(|o| *o != id) {
        // A backup deleted by hand since is nothing to release.
        let _ = barman(&["keep", "--release", server, old]).probe();
    }
    Ok(root)
}

/// Runs one drill and records it in `state_path`. Never returns an error: every failure is a
/// failed check in the returned (and saved) state.
pub fn drill(ctx: &Ctx, root: &Path, state_path: &Path, say: &mut dyn FnMut(String)) -> DrillState {
    let started = now_epoch();
    let t0 = Instant::now();
    let before = state::load(state_path)
        .ok()
        .flatten()
        .and_then(|s| s.kept_backup);
    let mut checks = Vec::new();
    let point = restore_point(ctx, started);
    let (target, point_text, point_time) = match &point {
        Ok((name, at)) => (
            Target::Name(name.clone()),
            format!("{name} ({at})"),
            Some(at.clone()),
        ),
        Err(e) => {
            checks.push(check(
                "restore point",
                Err(pgnode_core::Error::Refused(chain(e))),
            ));
            (
                Target::Latest,
                "latest (no restore point)".to_string(),
                None,
            )
        }
    };
    let req = Request {
        target,
        backup: None,
        keep: false,
    };
    let mut inner = Vec::new();
    let restored = run_then(ctx, root, &req, say, &mut |sb, o| {
        inner.push(check("catalog indexes (amcheck)", amcheck(sb, o)));
        inner.push(check("heartbeat", heartbeat(sb, point_time.as_deref())));
        Ok(())
    });
    let backup = match &restored {
        Ok(o) => {
            checks.push(DrillCheck {
                name: "restore".into(),
                ok: true,
                detail: format!(
                    "recovered to {} (LSN {}, timeline {}), replay {:.1}s",
                    o.target, o.found.end_lsn, o.found.timeline, o.replay_seconds
                ),
            });
            o.backup.clone()
        }
        Err(e) => {
            checks.push(check("restore", Err(pgnode_core::Error::Refused(chain(e)))));
            String::new()
        }
    };
    checks.extend(inner);
    if !backup.is_empty() {
        checks.push(check("barman verify-backup", verify_backup(ctx, &backup)));
    }
    let ok = !backup.is_empty() && checks.iter().all(|c| c.ok);
    let mut kept = before.clone();
    if ok {
        match keep_passed(ctx, &backup, before.as_deref()) {
            Ok(root) => kept = Some(root),
            Err(e) => checks.push(check("barman keep", Err(e))),
        }
    }
    let s = DrillState {
        started,
        ok: ok && checks.iter().all(|c| c.ok),
        seconds: t0.elapsed().as_secs_f64(),
        backup,
        restore_point: point_text,
        checks,
        kept_backup: kept,
    };
    if let Err(e) = state::save(state_path, &s) {
        say(format!(
            "cannot record the drill in {}: {}",
            state_path.display(),
            chain(&e)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_chain_root_in_barmans_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"master": {"backup_id": "20261126T114522", "backup_type": "incremental", "x": {"root_backup_id": "20261126T114236"}}}"#,
        )
        .unwrap();
        assert_eq!(
            find_str(&v, "root_backup_id").as_deref(),
            Some("20261126T114236")
        );
        let full: serde_json::Value =
            serde_json::from_str(r#"{"master": {"root_backup_id": null}}"#).unwrap();
        assert_eq!(find_str(&full, "root_backup_id"), None);
    }
}
