//! After a disaster recovery (`pgnode restore --to-node`) the primary forks a new timeline
//! from the last archived WAL, *before* the point where the lost primary stopped. Barman's
//! streaming directory still holds that lost primary's partial segment; pg_receivewal resumes
//! from it and the new primary refuses (that point is not in its history), so receive-wal never
//! streams again. The partial is moved aside (never deleted), then receive-wal starts afresh
//! from the slot on the primary's timeline.

use std::path::{Path, PathBuf};

use pgnode_core::ctx::BARMAN_HOME;
use pgnode_core::step::{Check, Step};
use pgnode_core::{system, Ctx, Error};

use crate::barman::barman;
use crate::follow::primary_timeline;

/// `(timeline, start LSN of the segment)` of a `TTTTTTTTXXXXXXXXYYYYYYYY.partial` name (16 MB
/// segments, the Debian default pgnode keeps).
pub fn parse_partial(name: &str) -> Option<(u32, u64)> {
    let base = name.strip_suffix(".partial")?;
    if base.len() != 24 || !base.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let tl = u32::from_str_radix(&base[..8], 16).ok()?;
    let hi = u64::from_str_radix(&base[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&base[16..], 16).ok()?;
    Some((tl, (hi << 32) | (lo << 24)))
}

/// Where timeline `tl` ended, from a timeline history file (`TL<TAB>X/Y<TAB>reason` lines).
pub fn switchpoint(history: &str, tl: u32) -> Option<u64> {
    history.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let t: u32 = f.next()?.parse().ok()?;
        let (hi, lo) = f.next()?.split_once('/')?;
        let lsn = (u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?;
        (t == tl).then_some(lsn)
    })
}

/// The primary's history file: from Barman's archive (`barman get-wal` decompresses it), or
/// still in its incoming directory.
fn history(server_dir: &Path, tl: u32) -> Option<String> {
    let name = format!("{tl:08X}.history");
    let server = server_dir.file_name()?.to_string_lossy().into_owned();
    match barman(&["get-wal", &server, &name]).probe() {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => Some(out.stdout),
        _ => std::fs::read_to_string(server_dir.join("incoming").join(&name)).ok(),
    }
}

/// Partials of an older timeline that start at or past where the primary's history left
/// it: not one byte of them is in the primary's history (a failover forks inside the partial
/// segment, which is then kept; a restore from the archive forks at a segment start).
fn lost(server_dir: &Path, tl: u32) -> Vec<String> {
    let Some(h) = history(server_dir, tl) else {
        return Vec::new();
    };
    std::fs::read_dir(server_dir.join("streaming"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    parse_partial(n).is_some_and(|(t, start)| {
                        t < tl && switchpoint(&h, t).is_some_and(|s| start >= s)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The step, before receive-wal: no partial segment of a lost timeline tail in streaming/.
pub fn lost_partial_set_aside(ctx: &Ctx) -> Step<'_> {
    let server_dir: PathBuf = ctx.path(Path::new(&format!(
        "{BARMAN_HOME}/{}",
        ctx.cluster.barman.server
    )));
    let dir2 = server_dir.clone();
    Step::change(
        "no partial WAL segment of a lost primary's tail in Barman's streaming directory",
        move || {
            let f = lost(&server_dir, primary_timeline(ctx)?);
            Ok(if f.is_empty() {
                Check::Ok
            } else {
                Check::Needs(f.join(", "))
            })
        },
        move || {
            let aside = dir2.join("streaming.pgnode-set-aside");
            let write = |p: &Path| {
                let p = p.to_path_buf();
                move |source| Error::Write { path: p, source }
            };
            std::fs::create_dir_all(&aside).map_err(write(&aside))?;
            let (u, g) = system::ids(&ctx.root, "barman", "barman")?;
            let _ = std::os::unix::fs::chown(&aside, Some(u), Some(g));
            for n in lost(&dir2, primary_timeline(ctx)?) {
                let from = dir2.join("streaming").join(&n);
                std::fs::rename(&from, aside.join(&n)).map_err(write(&from))?;
                eprintln!(
                    "pgnode: set aside {n} (the lost primary's tail) in {}",
                    aside.display()
                );
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_past_the_switchpoint_is_lost() {
        assert_eq!(
            parse_partial("00000001000000000000000A.partial"),
            Some((1, 0x0A00_0000))
        );
        assert_eq!(parse_partial("00000001000000000000000A"), None);
        assert_eq!(parse_partial("0000000100000000000000.partial"), None);
        let h = "1\t0/9005A10\tno recovery target specified\n";
        assert_eq!(switchpoint(h, 1), Some(0x0900_5A10));
        assert_eq!(switchpoint(h, 2), None);
        // Restored from the archive: TL1 ends at or before the partial's first byte.
        assert!(0x0A00_0000 >= switchpoint(h, 1).unwrap());
        assert!(0x0A00_0000 >= switchpoint("1\t0/A000000\tx\n", 1).unwrap());
        // A plain failover forks inside the partial's own segment: that one is kept.
        let f = "1\t0/A0001F8\tno recovery target specified\n";
        assert!(0x0A00_0000 < switchpoint(f, 1).unwrap());
    }
}
