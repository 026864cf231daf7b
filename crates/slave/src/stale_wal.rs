//! After pg_rewind, the former primary's own WAL segment that holds its lost tail (WAL past the
//! point where the new primary's history left its timeline) stays in pg_wal: pg_rewind keeps
//! target WAL it does not replace, and the new primary only has that segment as `.partial`.
//! Recovery never reads it (it reads the newer timeline's copy of that segment), but on
//! PostgreSQL 17 with `summarize_wal = on` the WAL summarizer starts from the oldest segment in
//! pg_wal and follows that timeline past its switch point into the lost tail, then waits at its
//! end forever ("could not read WAL from timeline 4 at 0/20145B60"). Seen in the lab (17.12):
//! the checkpointer then keeps every later segment (unsummarized), and the node's next promotion
//! failed after 60 s with "FATAL: WAL summarization is not progressing". Such segments are
//! moved beside the data directory (kept, never deleted: the lost tail may be wanted).

use std::path::{Path, PathBuf};

use pgnode_core::pg::parse_history;
use pgnode_core::{system, Ctx, Error, Result};

const SEG: u64 = 1 << 24;

/// The WAL segments (complete, 16 MB) of `names` that hold WAL past their timeline's end in
/// `history`.
pub fn stale(names: &[String], history: &[(u32, u64)]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            if n.len() != 24 || !n.chars().all(|c| c.is_ascii_hexdigit()) {
                return false;
            }
            let (Ok(tli), Ok(log), Ok(seg)) = (
                u32::from_str_radix(&n[..8], 16),
                u64::from_str_radix(&n[8..16], 16),
                u64::from_str_radix(&n[16..], 16),
            ) else {
                return false;
            };
            let end = (log * 256 + seg + 1) * SEG;
            history.iter().any(|(t, sp)| *t == tli && end > *sp)
        })
        .cloned()
        .collect()
}

/// The newest timeline history file in `pg_wal` (the new primary's, copied by pg_rewind).
fn newest_history(wal: &Path) -> Option<String> {
    let newest = std::fs::read_dir(wal)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 16 && n.ends_with(".history"))
        .max()?;
    std::fs::read_to_string(wal.join(newest)).ok()
}

/// Moves the stale segments of the data directory's pg_wal to `DATA.pgnode-lost-wal-EPOCH/`.
///
/// Errors: a directory or a rename fails.
pub fn set_aside(ctx: &Ctx) -> Result<()> {
    let data = ctx.path(&ctx.data_dir());
    let wal = data.join("pg_wal");
    let Some(h) = newest_history(&wal) else {
        return Ok(());
    };
    let names: Vec<String> = std::fs::read_dir(&wal)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let found = stale(&names, &parse_history(&h));
    if found.is_empty() {
        return Ok(());
    }
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside: PathBuf = data.with_file_name(format!(
        "{name}.pgnode-lost-wal-{}",
        pgnode_core::common::now_epoch()
    ));
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Write { path: p, source }
    };
    std::fs::create_dir_all(&aside).map_err(err(&aside))?;
    let (u, g) = system::ids(&ctx.root, "postgres", "postgres")?;
    let _ = std::os::unix::fs::chown(&aside, Some(u), Some(g));
    for n in found {
        std::fs::rename(wal.join(&n), aside.join(&n)).map_err(err(&wal.join(&n)))?;
        eprintln!(
            "pgnode: set aside {n} (WAL past its timeline's end, the lost tail) in {}",
            aside.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_past_their_timelines_end_are_stale() {
        // Seen in the lab: TL4 ended at 0/20135AA8; the rewound node kept its own TL4 segment 20.
        let h = parse_history("1\t0/A000000\tx\n4\t0/20135AA8\tx\n5\t0/270000A0\tx\n");
        let names: Vec<String> = [
            "00000004.history",
            "00000004000000000000001F",
            "000000040000000000000020",
            "000000040000000000000021",
            "000000050000000000000026",
            "000000050000000000000027.partial",
            "000000050000000000000027",
            "000000060000000000000027",
            "000000010000000000000009",
            "00000001000000000000000A",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            stale(&names, &h),
            [
                "000000040000000000000020",
                "000000040000000000000021",
                "000000050000000000000027",
                "00000001000000000000000A"
            ]
        );
        assert!(stale(&names, &[]).is_empty());
    }
}
