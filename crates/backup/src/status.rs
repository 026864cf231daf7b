//! `pgnode status` on the backup node: `barman check`, the last backup and its age, WAL.

use pgnode_core::status::NodeStatus;
use pgnode_core::{Ctx, Result};

use crate::barman::{backups, barman, parse_check};

/// Gathers the backup node's health.
pub fn status(ctx: &Ctx) -> NodeStatus {
    let n = ctx.node();
    let server = ctx.cluster.barman.server.as_str();
    let mut s = NodeStatus::new(n.name.as_str(), "backup", &n.address.to_string());
    match barman(&["check", server]).probe() {
        Ok(out) => {
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
        Err(e) => s.add("barman check", e.to_string(), false),
    }
    if let Some(why) = crate::receive::receive_wal_stuck(server) {
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
        s.add(
            "receive-wal",
            format!(
                "CANNOT STREAM: {why}; rerun `pgnode --role backup` (it resumes receive-wal on the primary's timeline)"
            ),
            false,
        );
    }
    s.add_result("last backup", last_backup(ctx));
    s.add_result("wal", wal(ctx));
    let drill = crate::restore::state::load(std::path::Path::new(crate::restore::state::STATE));
    let (line, ok) = match drill {
        Ok(d) => crate::restore::state::judge(
            d.as_ref(),
            &ctx.cluster.barman.restore_drill_schedule,
            pgnode_core::common::now_epoch(),
        ),
        Err(e) => (e.to_string(), false),
    };
    s.add("restore drill", line, ok);
    s
}

fn last_backup(ctx: &Ctx) -> Result<(String, bool)> {
    let b = backups(ctx)?;
    let done = b.iter().filter(|b| b.status == "DONE").count();
    // Backup ids are timestamps: the greatest is the newest.
    Ok(match b.iter().max_by(|x, y| x.id.cmp(&y.id)) {
        None => ("no backup".into(), false),
        Some(last) => {
            let age = last
                .end_epoch
                .map(|e| pgnode_core::common::now_epoch().saturating_sub(e))
                .map(|s| format!(", {}h{:02}m ago", s / 3600, s % 3600 / 60))
                .unwrap_or_default();
            let text = format!(
                "{} {} ended {}{age} ({done} DONE in total)",
                last.id, last.status, last.end_time
            );
            (text, done > 0)
        }
    })
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
