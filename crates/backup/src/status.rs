//! `pgnode status` on the backup node: `barman check`, the last backup and its age, WAL. What
//! each probe read makes both the table's line and the samples for `--prometheus` ([`metrics`]).

use pgnode_core::exec::{CmdError, Output};
use pgnode_core::status::NodeStatus;
use pgnode_core::{Ctx, Result};

use crate::barman::{backups, barman, parse_check, Backup};
use crate::restore::state;

mod metrics;

/// Gathers the backup node's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let server = ctx.cluster.barman.server.as_str();
    let mut s = NodeStatus::new(n.name.as_str(), "backup", &n.address.to_string());
    let check = barman(&["check", server]).probe();
    let lines = check.as_ref().ok().map(|out| parse_check(&out.stdout));
    check_items(&mut s, &check);
    if let Some(l) = &lines {
        metrics::check(&mut s, l);
    }
    let mut cannot_stream = false;
    if let Some(why) = crate::receive::receive_wal_stuck(server) {
        cannot_stream = true;
        s.add(
            "receive-wal",
            format!(
                "CANNOT STREAM: {why} on the master; rerun `pgnode --role backup` \
                 (resets receive-wal; archive_command fills the gap)"
            ),
            false,
        );
    }
    if let Some(why) = crate::lost_tail::stuck(ctx) {
        cannot_stream = true;
        s.add(
            "receive-wal",
            format!(
                "CANNOT STREAM: {why}; rerun `pgnode --role backup` (it resumes receive-wal on the primary's timeline)"
            ),
            false,
        );
    }
    metrics::receive_wal(&mut s, lines.as_deref(), cannot_stream);
    let list = backups(ctx);
    if let Ok(b) = &list {
        metrics::backups(&mut s, b);
    }
    let now = pgnode_core::common::now_epoch();
    s.add_result("last backup", list.map(|b| last_backup(&b, now)));
    s.add_result("wal", wal(ctx));
    drill(ctx, &mut s, now);
    s
}

/// The `barman check` item (every failing line, or how many passed) and the backup age.
fn check_items(s: &mut NodeStatus, check: &std::result::Result<Output, CmdError>) {
    let out = match check {
        Ok(out) => out,
        Err(e) => return s.add("barman check", e.to_string(), false),
    };
    let lines = parse_check(&out.stdout);
    let failing: Vec<String> = lines
        .iter()
        .filter(|l| !l.ok)
        .map(|l| format!("{}: {}", l.item, l.detail))
        .collect();
    let value = if lines.is_empty() {
        format!("no output: {}", out.stderr.trim())
    } else if failing.is_empty() {
        format!("{} checks OK", lines.len())
    } else {
        failing.join("\n")
    };
    s.add(
        "barman check",
        value,
        !lines.is_empty() && failing.is_empty(),
    );
    if let Some(age) = lines.iter().find(|l| l.item == "backup maximum age") {
        s.add("backup age", age.detail.clone(), age.ok);
    }
}

/// The last restore drill, judged against its schedule at `now`.
fn drill(ctx: &Ctx, s: &mut NodeStatus, now: u64) {
    let last = state::load(std::path::Path::new(state::STATE));
    let (line, ok) = match &last {
        Ok(d) => state::judge(d.as_ref(), &ctx.cluster.barman.restore_drill_schedule, now),
        Err(e) => (e.to_string(), false),
    };
    metrics::drill(s, last.as_ref().ok().and_then(Option::as_ref), ok);
    s.add("restore drill", line, ok);
}

fn last_backup(b: &[Backup], now: u64) -> (String, bool) {
    let done = b.iter().filter(|b| b.status == "DONE").count();
    // Backup ids are timestamps: the greatest is the newest.
    match b.iter().max_by(|x, y| x.id.cmp(&y.id)) {
        None => ("no backup".into(), false),
        Some(last) => {
            let age = last
                .end_epoch
                .map(|e| now.saturating_sub(e))
                .map(|s| format!(", {}h{:02}m ago", s / 3600, s % 3600 / 60))
                .unwrap_or_default();
            let text = format!(
                "{} {} ended {}{age} ({done} DONE in total)",
                last.id, last.status, last.end_time
            );
            (text, done > 0)
        }
    }
}

fn wal(ctx: &Ctx) -> Result<(String, bool)> {
    let out = barman(&["status", ctx.cluster.barman.server.as_str()]).run()?;
    let pick = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(key)
                    .map(|v| v.trim_start_matches(':').trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    };
    Ok((
        format!(
            "last archived {}; archiver failures {}; server's current WAL {}",
            pick("Last archived WAL"),
            pick("Failures of WAL archiver"),
            pick("Current WAL segment")
        ),
        true,
    ))
}
