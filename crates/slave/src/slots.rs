//! Slots left from when this node was a primary: they hold WAL on a standby for nothing, and are
//! dropped (only those carrying the cluster's slot names, never anything else).
//!
//! After a planned switchover this node's rejoin follows the new master while that one is still
//! a standby streaming from here through its old slot (`pg_slot_N`): it only lets go once its
//! own run promotes it, so in the order `vagrant provision` uses (this node first) the slot is
//! still active here at the end of this run, and the next run would drop it (not converged). A
//! slot held by the config's master while this node is itself a standby serves nothing: the
//! master already holds all of this node's WAL (the rejoin proved it received past our shutdown
//! checkpoint, or pg_rewind made us a prefix of its history), and this standby writes none of
//! its own. Its walsender is ended and the slot dropped in the same run; the master's
//! walreceiver retries until its promotion stops it asking. Barman's slot is left to Barman:
//! its receive-wal would re-create it until the backup role points Barman at the new primary.

use std::time::Duration;

use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, wait, Ctx, Result};

/// A slot of the cluster's names on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub active: bool,
    /// The streaming client's address when active.
    pub client: String,
    pub pid: String,
}

/// Which slots go: the inactive ones, and (on a standby) those only the config's master holds.
pub fn leftovers<'a>(slots: &'a [Slot], in_recovery: bool, master: &str) -> Vec<&'a Slot> {
    slots
        .iter()
        .filter(|s| !s.active || (in_recovery && s.client == master && !s.pid.is_empty()))
        .collect()
}

fn describe(s: &Slot) -> String {
    if s.active {
        format!(
            "{} (held by the master {}, which no longer needs it)",
            s.name, s.client
        )
    } else {
        s.name.clone()
    }
}

/// The cluster's slot names, quoted for SQL.
fn names(ctx: &Ctx) -> String {
    ctx.cluster
        .pg_nodes()
        .iter()
        .filter_map(|n| n.slot.as_ref().map(|s| format!("'{s}'")))
        .chain([format!("'{}'", ctx.cluster.barman.slot)])
        .collect::<Vec<_>>()
        .join(", ")
}

/// (in recovery, the cluster's slots here). Barman's slot counts only when inactive.
fn facts(ctx: &Ctx) -> Result<(bool, Vec<Slot>)> {
    let q = format!(
        "SELECT s.slot_name, s.active, coalesce(host(r.client_addr), ''), coalesce(s.active_pid::text, ''), pg_is_in_recovery() \
         FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
         WHERE s.slot_name IN ({});",
        names(ctx)
    );
    let rows = pg::query(&pg::local(ctx, &q))?;
    let in_recovery = rows
        .first()
        .and_then(|r| r.get(4))
        .is_some_and(|v| v == "t");
    let barman = ctx.cluster.barman.slot.as_str();
    let slots = rows
        .into_iter()
        .map(|r| {
            let get = |i: usize| r.get(i).cloned().unwrap_or_default();
            Slot {
                name: get(0),
                active: get(1) == "t",
                client: get(2),
                pid: get(3),
            }
        })
        .filter(|s| !(s.active && s.name == barman))
        .collect();
    Ok((in_recovery, slots))
}

fn todo(ctx: &Ctx) -> Result<Vec<Slot>> {
    let (in_recovery, slots) = facts(ctx)?;
    let master = ctx.cluster.master.address.to_string();
    Ok(leftovers(&slots, in_recovery, &master)
        .into_iter()
        .cloned()
        .collect())
}

/// The step: no slot of the cluster's names left from when this node was a primary.
pub fn no_leftover_slots(ctx: &Ctx) -> Step<'_> {
    Step::change(
        "no replication slots left from when this node was a primary",
        move || {
            let t = todo(ctx)?;
            Ok(if t.is_empty() {
                Check::Ok
            } else {
                let list: Vec<String> = t.iter().map(describe).collect();
                Check::Needs(format!("slots holding WAL: {}", list.join(", ")))
            })
        },
        move || {
            // Bounded: the master's walreceiver retries every wal_retrieve_retry_interval (5 s
            // by default) and may win a round; each round ends its walsender and drops at once.
            wait::until(
                "the leftover slots to be dropped",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || {
                    let t = todo(ctx)?;
                    if t.is_empty() {
                        return Ok(Ok(()));
                    }
                    for s in &t {
                        drop_slot(ctx, s)?;
                    }
                    Ok(Err(t.iter().map(describe).collect::<Vec<_>>().join(", ")))
                },
            )
        },
    )
}

/// Ends the slot's walsender (waiting up to 5 s for it to exit), then drops the slot if it is
/// inactive (a reconnect may have taken it again: the caller's next round ends that one too).
fn drop_slot(ctx: &Ctx, s: &Slot) -> Result<()> {
    let name = s.name.replace('\'', "''");
    let end = if s.active && s.pid.chars().all(|c| c.is_ascii_digit()) {
        // The timeout argument (wait for the process to exit) exists from PostgreSQL 14 on.
        let wait = if ctx.major.get() >= 14 { ", 5000" } else { "" };
        format!("SELECT pg_terminate_backend({}{wait});", s.pid)
    } else {
        String::new()
    };
    let sql = format!(
        "{end}SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{name}' AND NOT active;"
    );
    pg::local(ctx, &sql).probe()?;
    if s.active {
        eprintln!(
            "pgnode: dropped slot {} held by the master {} (it has all of this node's WAL)",
            s.name, s.client
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, active: bool, client: &str) -> Slot {
        Slot {
            name: name.into(),
            active,
            client: client.into(),
            pid: if active { "4242".into() } else { String::new() },
        }
    }

    #[test]
    fn a_standby_drops_what_only_the_new_master_still_holds() {
        let m = "192.168.11.102";
        let slots = [
            slot("pg_slot_1", true, m),
            slot("pg_slot_2", false, ""),
            slot("pg_slot_3", true, "192.168.11.104"),
        ];
        let names = |v: Vec<&Slot>| v.into_iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(leftovers(&slots, true, m)),
            ["pg_slot_1", "pg_slot_2"]
        );
        // Another standby streaming from here (cascading) keeps its slot; so does a primary.
        assert_eq!(names(leftovers(&slots, false, m)), ["pg_slot_2"]);
        assert!(describe(&slots[0]).contains("held by the master 192.168.11.102"));
        assert_eq!(describe(&slots[1]), "pg_slot_2");
    }
}
