//! A standby that can no longer stream: its slot on the master was invalidated
//! (`max_slot_wal_keep_size`), or the WAL it needs is gone from the master. Waiting fixes
//! neither; only a fresh clone does. pgnode tells these apart from a standby that is merely
//! reconnecting by two definitive signs: the master's answer to `READ_REPLICATION_SLOT`
//! (PostgreSQL >= 15; an invalidated slot has no restart_lsn) and the standby's own log since
//! its last start (the WAL receiver's last word is "cannot read from replication slot" or
//! "requested WAL segment ... has already been removed", not "started streaming").

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgnode_core::{pg, wait, Ctx, Error, Result};

/// The messages after which the WAL receiver can never succeed against this master (the
/// walsender's wording for an invalidated slot changed across majors; all are listed).
const BLOCKERS: [&str; 4] = [
    "cannot read from replication slot",
    "can no longer access replication slot",
    "can no longer get changes from replication slot",
    "has already been removed",
];

/// What the master says about the standby's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOnMaster {
    Usable,
    /// Exists, but `max_slot_wal_keep_size` invalidated it: it can never stream again.
    Invalidated,
    Missing,
    /// PostgreSQL < 15 (no READ_REPLICATION_SLOT) or the master did not answer.
    Unknown,
}

/// The standby's slot as the master sees it, over the standby's own replication connection.
///
/// Errors: psql could not be run.
pub fn read_slot(ctx: &Ctx) -> Result<SlotOnMaster> {
    if ctx.major.get() < 15 {
        return Ok(SlotOnMaster::Unknown);
    }
    let slot = ctx.node().standby_slot()?.as_str();
    let out =
        crate::clone::replication_psql(ctx, &format!("READ_REPLICATION_SLOT {slot};")).probe()?;
    if !out.success() {
        return Ok(SlotOnMaster::Unknown);
    }
    Ok(parse_read_slot(&pg::rows(&out.stdout)))
}

/// READ_REPLICATION_SLOT's row: (slot_type, restart_lsn, restart_tli), all NULL when missing.
pub fn parse_read_slot(rows: &[Vec<String>]) -> SlotOnMaster {
    match rows.first().map(|r| r.as_slice()) {
        Some([t, ..]) if t.is_empty() => SlotOnMaster::Missing,
        Some([_, lsn, ..]) if lsn.is_empty() => SlotOnMaster::Invalidated,
        Some([_, _, ..]) => SlotOnMaster::Usable,
        _ => SlotOnMaster::Unknown,
    }
}

/// Drops the standby's invalidated slot on the master (its replication role may: a slot that
/// can never serve anyone again is released so that the clone can create it afresh).
///
/// Errors: the master refused the drop.
pub fn drop_invalidated_slot(ctx: &Ctx) -> Result<()> {
    let slot = ctx.node().standby_slot()?.as_str();
    crate::clone::replication_psql(ctx, &format!("DROP_REPLICATION_SLOT {slot};")).run()?;
    Ok(())
}

/// The WAL receiver's last definitive failure in the standby's log since its last start, if
/// that failure is its latest word (a later "started streaming" clears it).
pub fn log_verdict(log: &str) -> Option<String> {
    let since_start = log
        .rfind("entering standby mode")
        .map_or(log, |i| &log[i..]);
    let mut verdict = None;
    for line in since_start.lines() {
        if line.contains("started streaming WAL") {
            verdict = None;
        } else if BLOCKERS.iter().any(|b| line.contains(b)) {
            verdict = Some(line.trim().to_string());
        }
    }
    verdict
}

/// The tail (256 KiB) of Debian's log of the local cluster; empty when there is none.
fn log_tail(ctx: &Ctx) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let path: PathBuf = ctx.path(Path::new(&format!(
        "/var/log/postgresql/postgresql-{}-main.log",
        ctx.major
    )));
    let Ok(mut f) = std::fs::File::open(&path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The WAL receiver's definitive failure from the standby's log, if that is its last word.
pub fn receiver_verdict(ctx: &Ctx) -> Option<String> {
    log_verdict(&log_tail(ctx))
}

/// The local WAL receiver's status ("streaming", ...), or "none".
pub fn receiver_status(ctx: &Ctx) -> Result<String> {
    pg::scalar(&pg::local(
        ctx,
        "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none');",
    ))
}

/// Why this standby must be re-cloned, if it definitively must. While the local server runs,
/// does not stream and has not failed definitively yet, waits up to `settle` for one or the
/// other (the WAL receiver retries every few seconds).
///
/// Errors: psql could not be run.
pub fn blocker(ctx: &Ctx, settle: Duration) -> Result<Option<String>> {
    let slot = ctx.node().standby_slot()?.as_str();
    if read_slot(ctx)? == SlotOnMaster::Invalidated {
        return Ok(Some(format!(
            "slot {slot} on the master is invalidated (the WAL it held passed max_slot_wal_keep_size and is gone)"
        )));
    }
    if !pg::local_ready(ctx)? {
        return Ok(None);
    }
    let verdict = wait::until(
        "the WAL receiver to stream or fail for good",
        settle,
        Duration::from_secs(1),
        || {
            if receiver_status(ctx)? == "streaming" {
                return Ok(Ok(None));
            }
            Ok(match log_verdict(&log_tail(ctx)) {
                Some(line) => Ok(Some(line)),
                None => Err("not streaming, no definitive failure in its log yet".into()),
            })
        },
    );
    match verdict {
        Ok(v) => Ok(v.map(|line| format!("the standby cannot stream any more: {line}"))),
        Err(Error::Timeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[&str]) -> Vec<Vec<String>> {
        vec![v.iter().map(|s| s.to_string()).collect()]
    }

    #[test]
    fn reads_the_slot_answer() {
        assert_eq!(
            parse_read_slot(&row(&["physical", "0/3000148", "1"])),
            SlotOnMaster::Usable
        );
        assert_eq!(
            parse_read_slot(&row(&["physical", "", ""])),
            SlotOnMaster::Invalidated
        );
        assert_eq!(parse_read_slot(&row(&["", "", ""])), SlotOnMaster::Missing);
        assert_eq!(parse_read_slot(&[]), SlotOnMaster::Unknown);
    }

    #[test]
    fn the_last_word_since_the_last_start_counts() {
        let gap = "2026-11-26 10:00:05 UTC [90] FATAL:  could not start WAL streaming: ERROR:  requested WAL segment 000000010000000000000009 has already been removed";
        let slot = "2026-11-26 10:00:05 UTC [91] FATAL:  could not start WAL streaming: ERROR:  cannot read from replication slot \"pg_slot_1\"";
        let start = "2026-11-26 10:00:00 UTC [80] LOG:  entering standby mode";
        let ok = "2026-11-26 10:00:09 UTC [92] LOG:  started streaming WAL from primary at 0/A000000 on timeline 1";
        assert_eq!(
            log_verdict(&format!("{start}\n{gap}\n")),
            Some(gap.to_string())
        );
        assert_eq!(
            log_verdict(&format!("{start}\n{slot}\n")),
            Some(slot.to_string())
        );
        // Streamed again afterwards: not a blocker.
        assert_eq!(log_verdict(&format!("{start}\n{gap}\n{ok}\n")), None);
        // A failure before the last start is history (the new clone restarted the server).
        assert_eq!(log_verdict(&format!("{gap}\n{start}\n")), None);
        assert_eq!(log_verdict(""), None);
    }
}
