//! Barman's WAL streaming: `barman receive-wal` through the slot on the master, and its repair
//! when the master can no longer serve it (slot invalidated by max_slot_wal_keep_size, or the
//! WAL it asks for already removed): re-create the slot, reset the streaming position. The WAL in
//! between reaches Barman through archive_command, so the archive keeps no gap.

use std::time::Duration;

use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, wait, Ctx, Error, Result};

use crate::barman::{barman, query_master};

/// Whether receive-wal streams through Barman's slot (seen from the master): the slot is active
/// and Barman's walsender is past its start-up, either `streaming` or still in `catchup`
/// (sending WAL the slot kept since it was created; under software emulation that took minutes,
/// and it is progress, not a fault: a receive-wal that cannot stream exits, leaving the slot
/// inactive). The observation names the walsender's state and how far behind it is.
fn receive_wal_streaming(ctx: &Ctx) -> Result<std::result::Result<(), String>> {
    let slot = ctx.cluster.barman.slot.as_str();
    let q = format!(
        "SELECT coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = '{slot}'), 'missing'), \
         coalesce((SELECT string_agg(state || ' ' || coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)), '?') || ' behind', ', ') \
                   FROM pg_stat_replication WHERE application_name = 'barman_receive_wal'), 'none');"
    );
    let r = pg::query(&query_master(ctx, &q))?;
    let r = r.first().cloned().unwrap_or_default();
    let active = r.first().map_or("?", |s| s.as_str());
    let sender = r.get(1).map_or("?", |s| s.as_str());
    Ok(if active == "true" && walsender_receiving(sender) {
        Ok(())
    } else {
        Err(format!(
            "slot {slot} active={active}, barman_receive_wal walsender: {sender}"
        ))
    })
}

/// Whether the walsender column above (`state N behind`, comma-separated) shows exactly one
/// walsender that streams or catches up.
fn walsender_receiving(sender: &str) -> bool {
    let states: Vec<&str> = sender.split(", ").collect();
    states.len() == 1 && (states[0].starts_with("streaming ") || states[0].starts_with("catchup "))
}

/// WAL streams to Barman: run `barman cron` (which starts receive-wal and creates the slot
/// if needed) and wait until the slot is active and pg_stat_replication shows the client.
pub fn receive_wal(ctx: &Ctx) -> Step<'_> {
    Step::change(
        format!(
            "receive-wal streams through slot {}",
            ctx.cluster.barman.slot
        ),
        move || {
            if slot_lost(ctx)? {
                return Ok(Check::Needs(format!(
                    "the master invalidated slot {} (max_slot_wal_keep_size)",
                    ctx.cluster.barman.slot
                )));
            }
            Ok(receive_wal_streaming(ctx)?.map_or_else(Check::Needs, |_| Check::Ok))
        },
        move || {
            let server = ctx.cluster.barman.server.as_str();
            // A receive-wal still attached to a former primary (or stuck on its timeline,
            // barman issue #1035) must not survive a change of primary: restart it.
            barman(&["receive-wal", "--stop", server])
                .discard_output()
                .probe()?;
            if slot_lost(ctx)? {
                // max_slot_wal_keep_size invalidated Barman's slot: it never serves again.
                eprintln!("pgnode: Barman's slot on the master was invalidated: re-creating it");
                slot_released(ctx)?;
                recreate_slot(server)?;
            }
            if start_receive_wal(ctx)? == Streaming::WalRemoved {
                // The primary no longer has the WAL receive-wal wants (its slot was invalidated
                // and re-created, or dropped; or the slot itself points at removed WAL after a
                // checkpoint that computed what to remove under a smaller max_slot_wal_keep_size):
                // a new slot, and streaming restarts from the current position. The WAL in
                // between reaches Barman through archive_command.
                barman(&["receive-wal", "--stop", server])
                    .discard_output()
                    .probe()?;
                eprintln!("pgnode: receive-wal asked for WAL the master has removed: re-creating Barman's slot, `barman receive-wal --reset {server}`");
                recreate_slot(server)?;
                barman(&["receive-wal", "--reset", server]).run()?;
                if start_receive_wal(ctx)? == Streaming::WalRemoved {
                    return Err(Error::Refused(format!(
                        "receive-wal still asks for removed WAL after `barman receive-wal --reset {server}`: see /var/log/barman/barman.log"
                    )));
                }
            }
            Ok(())
        },
    )
}

/// Waits (bounded) until no walsender holds Barman's slot: the stopped receive-wal's walsender
/// exits once it notices.
fn slot_released(ctx: &Ctx) -> Result<()> {
    let q = format!(
        "SELECT coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = '{}'), 'missing');",
        ctx.cluster.barman.slot
    );
    wait::until(
        "Barman's slot to be released on the master",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            let r = pg::query(&query_master(ctx, &q))?;
            Ok(match r.first().map(|r| r[0].as_str()) {
                Some("true") => Err("active=true".to_string()),
                _ => Ok(()),
            })
        },
    )
}

/// Drops Barman's slot (if there) and creates it anew, reserving WAL from now on. Barman's
/// streaming user may (REPLICATION).
fn recreate_slot(server: &str) -> Result<()> {
    barman(&["receive-wal", "--drop-slot", server])
        .discard_output()
        .probe()?;
    barman(&["receive-wal", "--create-slot", server]).run()?;
    Ok(())
}

/// Whether max_slot_wal_keep_size invalidated Barman's slot (PostgreSQL >= 13 can say so):
/// `lost`, or still streamed through, which PostgreSQL shows as `unreserved` with the bound not
/// reached (see the slave role's slot_valid).
fn slot_lost(ctx: &Ctx) -> Result<bool> {
    if ctx.major.get() < 13 {
        return Ok(false);
    }
    let q = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' \
         AND (wal_status = 'lost' OR (wal_status = 'unreserved' AND coalesce(safe_wal_size, 0) > 0));",
        ctx.cluster.barman.slot
    );
    Ok(pg::query(&query_master(ctx, &q))?
        .first()
        .map(|r| r[0].as_str())
        == Some("1"))
}

/// How a start of receive-wal ended.
#[derive(Debug, PartialEq)]
enum Streaming {
    Yes,
    /// Barman's log says the primary has already removed the WAL receive-wal asked for.
    WalRemoved,
}

/// `barman cron`, then a bounded wait until receive-wal streams, or until Barman's log (from
/// this start on) says the WAL it asked for is gone: no use waiting out the bound then.
fn start_receive_wal(ctx: &Ctx) -> Result<Streaming> {
    let server = ctx.cluster.barman.server.as_str();
    let from = log_len();
    barman(&["-q", "cron"]).discard_output().run()?;
    // Bounded, and generous: receive-wal first catches up from the slot's position, which
    // under software emulation took longer than 90 s.
    wait::until(
        "receive-wal to stream through Barman's slot",
        Duration::from_secs(300),
        Duration::from_secs(1),
        || {
            let streaming = match receive_wal_streaming(ctx) {
                Err(e) => match pg::connection_failed(&e) {
                    Some(why) => Err(format!("the master did not answer: {why}")),
                    None => return Err(e),
                },
                Ok(s) => s,
            };
            Ok(match streaming {
                Ok(()) => Ok(Streaming::Yes),
                Err(_) if wal_already_removed(server, from) => Ok(Streaming::WalRemoved),
                Err(e) => Err(e),
            })
        },
    )
}

const BARMAN_LOG: &str = "/var/log/barman/barman.log";

fn log_len() -> u64 {
    std::fs::metadata(BARMAN_LOG).map_or(0, |m| m.len())
}

/// Whether Barman's log, from byte `from` on (all of it if it was rotated since), ends with
/// receive-wal asking for WAL the primary has already removed.
fn wal_already_removed(server: &str, from: u64) -> bool {
    let text = std::fs::read(BARMAN_LOG).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(0);
    let new = text.get(from..).unwrap_or(&text[..]);
    stuck_in(&String::from_utf8_lossy(new), server).is_some()
}

/// Whether receive-wal's latest word in Barman's log is that the master removed the WAL it asks
/// for (no segment finished since): it will fail the same way every minute until reset.
pub fn receive_wal_stuck(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(BARMAN_LOG).unwrap_or_default();
    stuck_in(&text, server)
}

fn stuck_in(log: &str, server: &str) -> Option<String> {
    let me = format!(" {server}: pg_receivewal: ");
    let last = log.lines().rev().find(|l| {
        l.contains(&me)
            && (l.contains("finished segment") || l.contains("has already been removed"))
    })?;
    let at = last.find("requested WAL segment")?;
    Some(last[at..].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::{stuck_in, walsender_receiving};

    #[test]
    fn streaming_or_catching_up_is_receiving() {
        assert!(walsender_receiving("streaming 0 bytes behind"));
        assert!(walsender_receiving("catchup 48 MB behind"));
        assert!(!walsender_receiving("startup ? behind"));
        assert!(!walsender_receiving("backup 0 bytes behind"));
        assert!(!walsender_receiving("none"));
        assert!(!walsender_receiving(
            "streaming 0 bytes behind, catchup 1 MB behind"
        ));
    }

    #[test]
    fn stuck_until_a_segment_is_finished_again() {
        let err = "x INFO: master: pg_receivewal: error: unexpected termination of replication stream: \
                   ERROR:  requested WAL segment 00000001000000000000000D has already been removed\n";
        let done = "x INFO: master: pg_receivewal: finished segment at 0/2000000 (timeline 1)\n";
        assert_eq!(
            stuck_in(&format!("{done}{err}"), "master").as_deref(),
            Some("requested WAL segment 00000001000000000000000D has already been removed")
        );
        assert_eq!(stuck_in(&format!("{err}{done}"), "master"), None);
        assert_eq!(stuck_in(err, "other"), None);
    }

    #[test]
    fn only_this_servers_removed_wal_counts() {
        let log = "2026-11-26 17:38:55,030 [1982] barman.command_wrappers INFO: master: pg_receivewal: error: \
                   could not send replication command \"START_REPLICATION\": ERROR:  requested WAL segment \
                   000000010000000000000031 has already been removed\n";
        assert!(stuck_in(log, "master").is_some());
        assert!(stuck_in(log, "ast").is_none());
        assert!(stuck_in(
            "INFO: master: pg_receivewal: finished segment at 0/2000000 (timeline 1)",
            "master"
        )
        .is_none());
    }
}
