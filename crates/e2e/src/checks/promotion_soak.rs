//! Promotion soak (issue 17): `provision/e2e --soak-promotions N promotion-soak` promotions in a
//! row (default 5, at most 50), switchovers and failovers alternating, each under a bounded load. Every fourth one is a
//! failover at a segment boundary: the primary is killed right after a WAL switch, once the
//! standby and Barman hold exactly the switched segment, so the new timeline begins at the
//! boundary (what left receive-wal asking for the old timeline's end forever, before the backup
//! role repaired its start point). Promise after each promotion: Barman streams on the new
//! timeline within a bounded time, `barman check` is all OK, and Barman's archive is gapless
//! from its oldest backup across every timeline; a switchover also loses no acknowledged commit.
//! Prints each promotion's times. The original topology is restored afterwards, passed or not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::day2;
use crate::text::flat;
use crate::{archive, ensure, fail, pending, wait_for, Ctx, Ledger, Node, Pgbench, Result};

const LEDGER: &str = "e2e_soak";
/// How long Barman may take to stream on the new timeline once the roles ran.
const FOLLOW: Duration = Duration::from_secs(120);
/// The whole soak's bound, per promotion (roles, load, backups, waits).
const PER_PROMOTION: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Switchover,
    Failover,
    FailoverAtBoundary,
}

impl Kind {
    fn nth(i: usize) -> Kind {
        match i % 4 {
            1 => Kind::Failover,
            3 => Kind::FailoverAtBoundary,
            _ => Kind::Switchover,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Switchover => "switchover",
            Kind::Failover => "failover (kill -9 under pgbench)",
            Kind::FailoverAtBoundary => "failover at a segment boundary",
        }
    }
}

static PROMOTIONS: OnceLock<usize> = OnceLock::new();

/// How many promotions the soak runs (`--soak-promotions`; 5 when never set).
pub fn set_promotions(n: usize) {
    let _ = PROMOTIONS.set(n);
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let n = PROMOTIONS.get().copied().unwrap_or(5).clamp(1, 50);
    day2::with_restore(cx, |cx| soak(cx, n))
}

fn soak(cx: &mut Ctx, n: usize) -> Result<()> {
    let orig = day2::original(cx)?;
    let mut old = cx.cluster.primary().clone();
    let Some(mut new) = cx.cluster.standbys().first().map(|n| (*n).clone()) else {
        return fail("the config has no standby to promote", "");
    };
    let deadline = Instant::now() + PER_PROMOTION * u32::try_from(n).unwrap_or(50);
    let mut follow = Vec::new();
    for i in 0..n {
        ensure(
            Instant::now() < deadline,
            format!(
                "the soak ran out of its time bound before promotion {}",
                i + 1
            ),
            format!(
                "{} s for {n} promotions",
                PER_PROMOTION.as_secs() * n as u64
            ),
        )?;
        let kind = Kind::nth(i);
        let config = day2::with_master(&orig, &new.name);
        let path = day2::write_config(cx, day2::SWITCHED, &config)?;
        let secs = promote(cx, i + 1, kind, &old, &new, &path)?;
        follow.push(secs);
        std::mem::swap(&mut old, &mut new);
    }
    let max = follow.iter().copied().fold(0.0, f64::max);
    cx.note(format!(
        "{n} promotions: Barman streamed on each new timeline {} s after the promotion began (max {max:.1} s)",
        follow
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// One promotion from `old` to `new`; returns the seconds from its start until Barman streamed
/// on the new timeline.
fn promote(cx: &Ctx, nth: usize, kind: Kind, old: &Node, new: &Node, path: &str) -> Result<f64> {
    let before = timeline(old)?;
    let t0 = Instant::now();
    let mut ledger = None;
    let mut pgbench = None;
    match kind {
        Kind::Switchover => {
            pgbench = Some(Pgbench::start(old, 120, 2)?);
            ledger = Some(Ledger::start_bounded(old, LEDGER, 180, 1_000_000)?);
            old.poll_until(
                "postgres",
                &format!("select count(*) >= 50 from {LEDGER}"),
                "t",
                Duration::from_secs(60),
            )?;
            day2::role_ok(cx, old, "slave", path, &[])?;
        }
        Kind::Failover => {
            let p = Pgbench::start(old, 60, 4)?;
            old.poll_until(
                "postgres",
                "select sum(xact_commit) > 2000 from pg_stat_database",
                "t",
                Duration::from_secs(60),
            )?;
            old.kill9_postmaster()?;
            let _ = p.finish();
        }
        Kind::FailoverAtBoundary => kill_at_boundary(cx, old, new)?,
    }
    let load = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let extra: &[&str] = if kind == Kind::Switchover {
        &[]
    } else {
        &["--force-promote"]
    };
    day2::role_ok(cx, new, "master", path, extra)?;
    let promoted = t1.elapsed().as_secs_f64();
    let tl = timeline(new)?;
    let watch = Watch::start(cx, new, tl, t1);
    if kind != Kind::Switchover {
        day2::role_ok(cx, old, "slave", path, &[])?;
    }
    for s in cx.cluster.standbys() {
        if s.name != old.name && s.name != new.name {
            day2::role_ok(cx, s, "slave", path, &[])?;
        }
    }
    ensure(
        tl > before,
        format!("{new} is not on a newer timeline than {old} was"),
        format!("before {before}, now {tl}"),
    )?;
    let began = switch_point(new, tl)?;
    let out = day2::role_ok(cx, cx.cluster.backup(), "backup", path, &[])?;
    let slow = slow_steps(&out, 5.0);
    if !slow.is_empty() {
        cx.note(format!(
            "#{nth}: backup role's slow steps: {}",
            slow.join("; ")
        ));
    }
    let roles = t1.elapsed().as_secs_f64();
    barman_streams_on(cx, new, tl)?;
    let streaming = watch.seen().unwrap_or_else(|| t1.elapsed().as_secs_f64());
    if let (Some(l), Some(p)) = (ledger, pgbench) {
        let report = l.stop()?;
        let _ = p.finish();
        let present = report.verify_on(new, LEDGER)?;
        cx.note(format!(
            "#{nth}: {} commits acknowledged on {old}, all {present} on {new}",
            report.acked.len()
        ));
    }
    barman_check_ok(cx)?;
    let last = archive::close_and_archive(new, Duration::from_secs(120))?;
    let server = cx.cluster.config.barman.server.as_str();
    let files =
        archive::wait_gapless(cx.cluster.backup(), server, &last, Duration::from_secs(180))?;
    cx.note(format!(
        "#{nth} {}: {old} -> {new}, timeline {before} -> {tl} (began at {began}); load {load:.1} s; \
         promotion (master role) {promoted:.1} s; Barman streaming on timeline {tl} {streaming:.1} s \
         after the master role began, every role done after {roles:.1} s; barman check OK; \
         archive gapless up to {last} ({files} files)",
        kind.name()
    ));
    Ok(streaming)
}

/// The steps of a role's output that took at least `secs` (`... [12.3s]` lines), shortened.
fn slow_steps(out: &str, secs: f64) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (head, t) = l.trim_end().strip_suffix("s]")?.rsplit_once(" [")?;
            let t: f64 = t.parse().ok()?;
            let head = head.trim();
            let head = head.split_once(": ").map_or(head, |(h, _)| h);
            (t >= secs).then(|| format!("{head} {t:.1}s"))
        })
        .collect()
}

/// The node's current timeline (from its current WAL file name).
fn timeline(node: &Node) -> Result<u32> {
    let q = "select substr(pg_walfile_name(case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end), 1, 8)";
    let hex = node.sql("postgres", q)?;
    u32::from_str_radix(hex.trim(), 16)
        .or_else(|e| fail(format!("{node}: timeline {hex:?}: {e}"), ""))
}

/// Where the timeline before `tl` ended (the last line of `tl`'s history file on `node`), and
/// whether that is a segment boundary.
fn switch_point(node: &Node, tl: u32) -> Result<String> {
    let q = format!("select pg_read_file('pg_wal/{tl:08X}.history')");
    let h = node.sql("postgres", &q)?;
    let Some(lsn) = archive::parse_history(&h).last().map(|(_, l)| *l) else {
        return fail(format!("{node}: no switch point in {tl:08X}.history"), h);
    };
    let at = format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff);
    Ok(if lsn % (1 << 24) == 0 {
        format!("{at}, a segment boundary")
    } else {
        at
    })
}

/// Kills `old` with its WAL flushed exactly to a segment boundary: a WAL switch after a short
/// pgbench run, then SIGKILL as soon as `new` has received up to the boundary and Barman holds
/// the switched segment complete (no `.partial` after it).
fn kill_at_boundary(cx: &Ctx, old: &Node, new: &Node) -> Result<()> {
    Pgbench::start(old, 10, 2)?.finish()?;
    // Anything the primary writes after the switch (autovacuum after pgbench, a checkpoint, a
    // standby snapshot) moves it off the boundary: switch again, at most three times.
    let mut last = None;
    for _ in 0..3 {
        old.sql("postgres", "select pg_switch_wal()")?;
        let boundary = old.sql("postgres", "select pg_current_wal_lsn()")?;
        match held_exactly(cx, old, new, &boundary) {
            Ok(()) => {
                old.kill9_postmaster()?;
                cx.note(format!(
                    "{old}: killed right after a WAL switch; {new} and Barman held exactly up to {boundary}"
                ));
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| crate::Failure::new("no WAL switch tried", "")))
}

/// Waits (10 s) until `new` received exactly up to `boundary`, Barman holds the segment before
/// it complete with no `.partial` after it, and `old` wrote nothing past it.
fn held_exactly(cx: &Ctx, old: &Node, new: &Node, boundary: &str) -> Result<()> {
    let seg = old.sql(
        "postgres",
        &format!("select pg_walfile_name('{boundary}'::pg_lsn - 1)"),
    )?;
    let dir = streaming_dir(cx);
    let b = cx.cluster.backup();
    wait_for(
        &format!("{new} and Barman to hold WAL exactly up to {boundary}"),
        Duration::from_secs(10),
        || {
            let moved = old.sql(
                "postgres",
                &format!("select pg_current_wal_lsn() > '{boundary}'"),
            )?;
            if moved == "t" {
                return fail(format!("{old} wrote WAL past {boundary}"), "");
            }
            let got = new.sql("postgres", "select pg_last_wal_receive_lsn()")?;
            let files = b.ok(&["ls", &dir])?;
            let complete = files.lines().any(|l| l == seg);
            let partial = files.lines().any(|l| l.ends_with(".partial"));
            if got == boundary && complete && !partial {
                Ok(Some(()))
            } else {
                pending(format!(
                    "{new} received {got}; Barman's streaming: {}",
                    flat(&files)
                ))
            }
        },
    )
}

fn streaming_dir(cx: &Ctx) -> String {
    format!(
        "/var/lib/barman/{}/streaming",
        cx.cluster.config.barman.server
    )
}

/// Whether Barman's receive-wal streams from `primary` and writes WAL of timeline `tl` into its
/// streaming directory; Err carries what was seen instead.
fn streams_on(primary: &Node, backup: &Node, dir: &str, tl: u32) -> Result<()> {
    let n = primary.sql(
        "postgres",
        "select count(*) from pg_stat_replication where application_name = 'barman_receive_wal' and state = 'streaming'",
    )?;
    let files = backup.ok(&["ls", dir])?;
    let prefix = format!("{tl:08X}");
    let on_tl = files
        .lines()
        .any(|l| l.starts_with(&prefix) && !l.ends_with(".history"));
    if n == "1" && on_tl {
        return Ok(());
    }
    let log = backup.run(&["tail", "-n", "3", "/var/log/barman/barman.log"])?;
    fail(
        "",
        format!(
            "barman_receive_wal streaming: {n}; streaming dir: {}\n{}",
            flat(&files),
            log.stdout.trim_end()
        ),
    )
}

/// Waits (bounded) until Barman streams on timeline `tl` from `primary` (see [`streams_on`]).
fn barman_streams_on(cx: &Ctx, primary: &Node, tl: u32) -> Result<()> {
    let (b, dir) = (cx.cluster.backup(), streaming_dir(cx));
    wait_for(
        &format!("Barman's receive-wal to stream from {primary} on timeline {tl}"),
        FOLLOW,
        || streams_on(primary, b, &dir, tl).map(Some),
    )
}

/// Watches, beside the roles that run after the promotion, for the moment Barman streams on the
/// new timeline (polls once a second; stops when told or after its own bound).
struct Watch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Option<f64>>>,
}

impl Watch {
    fn start(cx: &Ctx, primary: &Node, tl: u32, since: Instant) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, b, dir, flag) = (
            primary.clone(),
            cx.cluster.backup().clone(),
            streaming_dir(cx),
            stop.clone(),
        );
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) && since.elapsed() < PER_PROMOTION {
                if streams_on(&p, &b, &dir, tl).is_ok() {
                    return Some(since.elapsed().as_secs_f64());
                }
                thread::sleep(Duration::from_secs(1));
            }
            None
        });
        Watch {
            stop,
            handle: Some(handle),
        }
    }

    /// Seconds after `since` when Barman was first seen streaming on the timeline, if it was.
    fn seen(mut self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take()?.join().ok().flatten()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `barman check` all OK (bounded: an item such as "receive-wal running" can flip while cron
/// restarts it).
fn barman_check_ok(cx: &Ctx) -> Result<()> {
    let b = cx.cluster.backup();
    let server = cx.cluster.config.barman.server.as_str();
    wait_for("barman check to be all OK", Duration::from_secs(60), || {
        let out = b.barman(&["check", server])?;
        if out.success() {
            Ok(Some(()))
        } else {
            pending(out.combined())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_steps_are_named_with_their_time() {
        let out = "     changed  receive-wal streams through slot barman: slot barman active=false  [3.4s]\n\
                   \x20    changed  a base backup of the primary's current timeline exists: no DONE backup  [23.4s]\n\
                   recap: role=backup ok=16 changed=8 failed=0 elapsed=34.5s\n";
        assert_eq!(
            slow_steps(out, 5.0),
            vec![
                "changed  a base backup of the primary's current timeline exists 23.4s".to_string()
            ]
        );
    }

    #[test]
    fn promotions_alternate_and_every_fourth_is_at_a_boundary() {
        let kinds: Vec<Kind> = (0..8).map(Kind::nth).collect();
        assert_eq!(
            kinds[..4],
            [
                Kind::Switchover,
                Kind::Failover,
                Kind::Switchover,
                Kind::FailoverAtBoundary
            ]
        );
        assert_eq!(kinds[4..], kinds[..4]);
    }
}
