//! Where receive-wal resumes after a change of primary. `barman receive-wal` runs
//! `pg_receivewal --no-loop` without a start position, so pg_receivewal picks one itself from
//! Barman's streaming directory (`FindStreamingStart`): the highest segment number, on the
//! highest timeline for that number; from the start of that segment when it is a `.partial`,
//! from the start of the next one when it is complete. It then sends `START_REPLICATION` at that
//! point *on that file's timeline*.
//!
//! After a promotion the primary is on a newer timeline. Its walsender serves the old timeline
//! only strictly below the point where that timeline ended (the switch point in the primary's
//! history file): asked for a start past it, it refuses ("requested starting point ... is not in
//! this server's history"); asked for exactly the switch point, it has nothing to send on that
//! timeline and answers with the next timeline's result set instead of streaming, which
//! pg_receivewal reports as `could not send replication command "START_REPLICATION": ` with an
//! empty message. Either way receive-wal fails the same way every minute, forever:
//!
//! - the old primary was killed with its WAL flushed exactly to a segment boundary (right after
//!   a WAL switch, or while the WAL writer had flushed just the completed segment): the standby
//!   and Barman both received exactly up to it, Barman keeps that complete segment as its
//!   position, and the new timeline begins at the boundary;
//! - Barman received more of the old primary's WAL than the standby did (a complete segment, or
//!   a `.partial`, past the switch point: the lost primary's tail);
//! - a disaster recovery forked a new timeline from the archive, before the lost primary's end.
//!
//! The repair, receive-wal stopped: files of an old timeline that start at or past that
//! timeline's switch point (WAL that is in no history the primary has) are moved aside, never
//! deleted; if pg_receivewal would still start at or past its timeline's end, an empty
//! `.partial` (Barman's own way of setting the position, as `receive-wal --reset` does) names
//! the segment holding the switch point on the *next* timeline: the walsender serves that
//! segment whole (the old timeline's WAL up to the switch, then the new one), so streaming
//! resumes without a gap. Barman archives the older files once a newer one is there.

use std::path::{Path, PathBuf};

use pgnode_core::ctx::BARMAN_HOME;
use pgnode_core::pg::parse_history;
use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, system, Ctx, Error, Result};

use crate::barman::barman;
use crate::follow::primary_timeline;

/// WAL segment size: 16 MB, the Debian default pgnode keeps.
const SEG: u64 = 1 << 24;

/// A WAL file of the streaming directory, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub tli: u32,
    pub segno: u64,
    pub partial: bool,
}

impl Seg {
    /// The LSN of the segment's first byte.
    pub fn start(&self) -> u64 {
        self.segno * SEG
    }
}

/// `TTTTTTTTXXXXXXXXYYYYYYYY` or the same with `.partial` (anything else: None).
pub fn parse_wal_name(name: &str) -> Option<Seg> {
    let (base, partial) = match name.strip_suffix(".partial") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if base.len() != 24 || !base.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&base[..8], 16).ok()?;
    let log = u64::from_str_radix(&base[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&base[16..], 16).ok()?;
    (seg < 0x1_0000_0000 / SEG).then_some(Seg {
        tli,
        segno: log * (0x1_0000_0000 / SEG) + seg,
        partial,
    })
}

/// The file name of segment `segno` on timeline `tli`.
pub fn wal_name(tli: u32, segno: u64) -> String {
    let per = 0x1_0000_0000 / SEG;
    format!("{tli:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// Where pg_receivewal starts, `(LSN, timeline)`, from these files, as its
/// `FindStreamingStart` decides (PostgreSQL 10 to 17); None when there is none (it then asks
/// the slot, or takes the server's position).
pub fn streaming_start(files: &[Seg]) -> Option<(u64, u32)> {
    let high = files
        .iter()
        .filter(|s| s.segno > 0)
        .max_by_key(|s| (s.segno, s.tli, !s.partial))?;
    let segno = if high.partial {
        high.segno
    } else {
        high.segno + 1
    };
    Some((segno * SEG, high.tli))
}

/// Where timeline `tl` ended in `history`.
pub fn switchpoint(history: &[(u32, u64)], tl: u32) -> Option<u64> {
    history.iter().find(|(t, _)| *t == tl).map(|(_, s)| *s)
}

/// The timeline that followed `tl` in the primary's history (`primary` after the last entry).
fn next_timeline(history: &[(u32, u64)], tl: u32, primary: u32) -> u32 {
    history
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t > tl)
        .min()
        .unwrap_or(primary)
}

/// What the streaming directory needs so that receive-wal resumes on the primary's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Where pg_receivewal would start now, and why it cannot.
    pub why: String,
    /// Files of an old timeline at or past its end: moved aside, never deleted.
    pub aside: Vec<String>,
    /// An empty `.partial` to create: the segment holding the switch point, on the next timeline.
    pub status: Option<String>,
}

fn lsn(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xffff_ffff)
}

/// The repair the streaming directory `names` needs for a primary on timeline `primary` with
/// this history, or None when pg_receivewal will stream from where it starts.
pub fn plan(names: &[String], primary: u32, history: &[(u32, u64)]) -> Option<Repair> {
    let segs: Vec<(&String, Seg)> = names
        .iter()
        .filter_map(|n| parse_wal_name(n).map(|s| (n, s)))
        .collect();
    // Starting at or past the end of an older timeline: the primary cannot serve it.
    let stuck = |start: u64, tl: u32| {
        tl < primary && switchpoint(history, tl).is_some_and(|sp| start >= sp)
    };
    let all: Vec<Seg> = segs.iter().map(|(_, s)| *s).collect();
    let (start, tl) = streaming_start(&all)?;
    if !stuck(start, tl) {
        return None;
    }
    let why = format!(
        "pg_receivewal would start at {} on timeline {tl}, which ended at {} in the primary's history (timeline {primary})",
        lsn(start),
        lsn(switchpoint(history, tl).unwrap_or_default())
    );
    let (aside, rest): (Vec<_>, Vec<_>) =
        segs.into_iter().partition(|(_, s)| stuck(s.start(), s.tli));
    let rest: Vec<Seg> = rest.into_iter().map(|(_, s)| s).collect();
    let status = match streaming_start(&rest) {
        Some((start, tl)) if stuck(start, tl) => {
            let from = switchpoint(history, tl).unwrap_or_default() / SEG * SEG;
            let mut next = next_timeline(history, tl, primary);
            while next < primary && switchpoint(history, next).is_some_and(|sp| sp <= from) {
                next = next_timeline(history, next, primary);
            }
            Some(format!("{}.partial", wal_name(next, from / SEG)))
        }
        // Nothing left, or a start the primary serves: pg_receivewal finds its way alone
        // (with no file it starts from the slot's restart_lsn on PostgreSQL >= 15).
        _ => None,
    };
    Some(Repair {
        why,
        aside: aside.into_iter().map(|(n, _)| n.clone()).collect(),
        status,
    })
}

/// The primary's history file for its timeline `tl`: from the primary itself
/// (`TIMELINE_HISTORY` over Barman's replication login), else Barman's archive or incoming
/// directory (`barman get-wal` decompresses it).
fn history(ctx: &Ctx, server_dir: &Path, tl: u32) -> Option<String> {
    let c = &ctx.cluster;
    let conninfo = format!(
        "host={} port={} user={} dbname=replication replication=true application_name=pgnode",
        c.master.address,
        ctx.port(),
        c.barman.streaming_user
    );
    let passfile = PathBuf::from(format!("{BARMAN_HOME}/.pgpass"));
    let cmd = pg::remote(
        "barman",
        &conninfo,
        &passfile,
        &format!("TIMELINE_HISTORY {tl}"),
    );
    if let Ok(out) = cmd.probe() {
        // One row: the file name, then the content (multi-line) after the field separator.
        if let Some((_, content)) = out.stdout.split_once(pg::SEP) {
            if out.success() && !parse_history(content).is_empty() {
                return Some(content.to_string());
            }
        }
    }
    let name = format!("{tl:08X}.history");
    let server = ctx.cluster.barman.server.as_str();
    match barman(&["get-wal", server, &name]).probe() {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => Some(out.stdout),
        _ => std::fs::read_to_string(server_dir.join("incoming").join(&name)).ok(),
    }
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The repair the streaming directory needs now (None: receive-wal can resume as it is). The
/// history is only read when pg_receivewal would start on an older timeline than the primary's.
fn needed(ctx: &Ctx, server_dir: &Path) -> Result<Option<Repair>> {
    let files = names(&server_dir.join("streaming"));
    let primary = primary_timeline(ctx)?;
    let segs: Vec<Seg> = files.iter().filter_map(|n| parse_wal_name(n)).collect();
    match streaming_start(&segs) {
        Some((_, tl)) if tl < primary => {}
        _ => return Ok(None),
    }
    let Some(h) = history(ctx, server_dir, primary) else {
        return Ok(None);
    };
    Ok(plan(&files, primary, &parse_history(&h)))
}

/// For `pgnode status`: why receive-wal cannot resume, if it cannot (None also when the
/// primary cannot be asked).
pub fn stuck(ctx: &Ctx) -> Option<String> {
    let dir = ctx.path(Path::new(&format!(
        "{BARMAN_HOME}/{}",
        ctx.cluster.barman.server
    )));
    needed(ctx, &dir).ok().flatten().map(|r| r.why)
}

/// The step, before receive-wal: pg_receivewal's start point in Barman's streaming directory is
/// one the primary can serve.
pub fn lost_partial_set_aside(ctx: &Ctx) -> Step<'_> {
    let server_dir: PathBuf = ctx.path(Path::new(&format!(
        "{BARMAN_HOME}/{}",
        ctx.cluster.barman.server
    )));
    let dir2 = server_dir.clone();
    Step::change(
        "receive-wal resumes on the primary's timeline history (Barman's streaming directory)",
        move || {
            Ok(match needed(ctx, &server_dir)? {
                None => Check::Ok,
                Some(r) => Check::Needs(r.why),
            })
        },
        move || {
            let server = ctx.cluster.barman.server.as_str();
            // Nothing may write the directory meanwhile (barman cron restarts it afterwards).
            barman(&["receive-wal", "--stop", server])
                .discard_output()
                .probe()?;
            let Some(r) = needed(ctx, &dir2)? else {
                return Ok(());
            };
            repair(ctx, &dir2, &r)
        },
    )
}

fn repair(ctx: &Ctx, server_dir: &Path, r: &Repair) -> Result<()> {
    let streaming = server_dir.join("streaming");
    let aside = server_dir.join("streaming.pgnode-set-aside");
    let write = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Write { path: p, source }
    };
    let (u, g) = system::ids(&ctx.root, "barman", "barman")?;
    eprintln!("pgnode: {}", r.why);
    if !r.aside.is_empty() {
        std::fs::create_dir_all(&aside).map_err(write(&aside))?;
        let _ = std::os::unix::fs::chown(&aside, Some(u), Some(g));
    }
    for n in &r.aside {
        let from = streaming.join(n);
        std::fs::rename(&from, aside.join(n)).map_err(write(&from))?;
        eprintln!(
            "pgnode: set aside {n} (WAL past its timeline's end: in no history of the primary) in {}",
            aside.display()
        );
    }
    if let Some(n) = &r.status {
        let p = streaming.join(n);
        if !p.exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .map_err(write(&p))?;
            std::os::unix::fs::chown(&p, Some(u), Some(g)).map_err(write(&p))?;
            eprintln!("pgnode: receive-wal resumes from {n} (empty: pg_receivewal fills it)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(names: &[&str], primary: u32, history: &str) -> Option<Repair> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        plan(&names, primary, &parse_history(history))
    }

    #[test]
    fn wal_names() {
        let s = parse_wal_name("00000001000000000000000A").unwrap();
        assert_eq!(
            (s.tli, s.segno, s.partial, s.start()),
            (1, 10, false, 0x0A00_0000)
        );
        assert!(
            parse_wal_name("00000003000000010000001F.partial")
                .unwrap()
                .partial
        );
        assert_eq!(
            parse_wal_name("000000030000000100000020").unwrap().segno,
            0x120
        );
        for bad in [
            "00000002.history",
            "0000000100000000000000.partial",
            "x.partial",
            "000000010000000000000100",
        ] {
            assert_eq!(parse_wal_name(bad), None, "{bad}");
        }
        assert_eq!(wal_name(2, 0x1FF), "0000000200000001000000FF");
        assert_eq!(
            switchpoint(
                &parse_history("1\t0/9005A10\tno recovery target specified\n"),
                1
            ),
            Some(0x0900_5A10)
        );
    }

    #[test]
    fn start_point_as_pg_receivewal_chooses_it() {
        let s = |n: &str| parse_wal_name(n).unwrap();
        // A complete segment: the next one; a partial: its own start.
        assert_eq!(
            streaming_start(&[s("000000010000000000000009")]),
            Some((0x0A00_0000, 1))
        );
        assert_eq!(
            streaming_start(&[s("00000001000000000000000A.partial")]),
            Some((0x0A00_0000, 1))
        );
        // The same segment on a higher timeline wins, whatever the order.
        let two = [
            s("00000002000000000000000A.partial"),
            s("00000001000000000000000A"),
        ];
        assert_eq!(streaming_start(&two), Some((0x0A00_0000, 2)));
        // Complete beats partial of the same name.
        let both = [
            s("00000001000000000000000A.partial"),
            s("00000001000000000000000A"),
        ];
        assert_eq!(streaming_start(&both), Some((0x0B00_0000, 1)));
        assert_eq!(streaming_start(&[]), None);
    }

    #[test]
    fn killed_at_a_segment_boundary_resumes_on_the_new_timeline() {
        // Seen in the lab: TL1 ended exactly at 0/A000000; Barman holds 09 complete, no partial,
        // and pg_receivewal asked for 0/A000000 on timeline 1 every minute.
        let h = "1\t0/A000000\tno recovery target specified\n";
        let r = plan_of(&["000000010000000000000009"], 2, h).unwrap();
        assert!(r.aside.is_empty(), "{r:?}");
        assert_eq!(
            r.status.as_deref(),
            Some("00000002000000000000000A.partial")
        );
        assert!(
            r.why
                .contains("start at 0/A000000 on timeline 1, which ended at 0/A000000"),
            "{}",
            r.why
        );
        // Once repaired, nothing more to do.
        assert_eq!(
            plan_of(
                &[
                    "000000010000000000000009",
                    "00000002000000000000000A.partial"
                ],
                2,
                h
            ),
            None
        );
    }

    #[test]
    fn a_start_before_the_switch_point_needs_nothing() {
        // A switchover: Barman has the old timeline's partial, the shutdown checkpoint inside it.
        let h = "1\t0/A0000A0\tno recovery target specified\n";
        assert_eq!(plan_of(&["00000001000000000000000A.partial"], 2, h), None);
        // Already streaming on the primary's timeline.
        assert_eq!(plan_of(&["00000002000000000000000B.partial"], 2, h), None);
        // Nothing at all: pg_receivewal asks the slot.
        assert_eq!(plan_of(&[], 2, h), None);
    }

    #[test]
    fn wal_past_the_switch_point_is_set_aside() {
        // Barman got more of the old primary than the standby, or a restore forked earlier.
        let h = "1\t0/9005A10\tno recovery target specified\n";
        let r = plan_of(
            &["00000001000000000000000A.partial", "00000002.history"],
            2,
            h,
        )
        .unwrap();
        assert_eq!(
            r.aside,
            vec!["00000001000000000000000A.partial".to_string()]
        );
        assert_eq!(r.status, None);
        // A complete segment past the switch point too; the one holding it stays and the new
        // timeline's copy of that segment is where streaming resumes.
        let r = plan_of(
            &["000000010000000000000009", "00000001000000000000000A"],
            2,
            h,
        )
        .unwrap();
        assert_eq!(r.aside, vec!["00000001000000000000000A".to_string()]);
        assert_eq!(
            r.status.as_deref(),
            Some("000000020000000000000009.partial")
        );
    }

    #[test]
    fn several_promotions_since_barman_last_streamed() {
        let h = "1\t0/A000000\tx\n2\t0/C0000A0\tx\n";
        let r = plan_of(&["000000010000000000000009"], 3, h).unwrap();
        assert_eq!(
            r.status.as_deref(),
            Some("00000002000000000000000A.partial")
        );
        // Timeline 2 ended before that segment: skip to the one after it.
        let h = "1\t0/A000000\tx\n2\t0/A000000\tx\n";
        let r = plan_of(&["000000010000000000000009"], 3, h).unwrap();
        assert_eq!(
            r.status.as_deref(),
            Some("00000003000000000000000A.partial")
        );
        // A timeline the primary's history does not name: not this step's to judge.
        assert_eq!(plan_of(&["000000040000000000000009"], 5, h), None);
    }
}
