//! Drill 2: both consumers of the primary's slots fall behind `max_slot_wal_keep_size` (the
//! standby powered off, Barman's pg_receivewal hung): the primary stays up with bounded pg_wal
//! and its status names both lost slots and their repair; rerunning the slave role re-clones the
//! standby (old data directory kept aside), rerunning the backup role re-creates Barman's slot and
//! resets receive-wal, and Barman's WAL archive has no gap (archive_command kept delivering).

use std::time::Duration;

use crate::faults::{self, Clock};
use crate::{archive, ensure, fail, pending, wait_for, Ctx, Node, Result};

const CONFIG: &str = "e2e-fault-slot-lost.json";

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "slots invalidated by max_slot_wal_keep_size (standby off, Barman's receive-wal hung) leave the primary up with bounded pg_wal and are named by its status; rerunning the slave role re-clones (old data directory kept aside), rerunning the backup role re-creates Barman's slot and resets receive-wal, Barman's archive stays gapless, 0 acknowledged commits lost, every node healthy",
    );
    let hooks = faults::hooks(cx)?;
    let (primary, standby) = (cx.cluster.primary(), faults::first_standby(cx)?);
    let layout = cx.cluster.target().layout();
    let config = faults::test_config(
        cx,
        CONFIG,
        &[("wal_keep_size_mb", 16), ("max_slot_wal_keep_size_mb", 64)],
    )?;
    faults::converge_with(primary, &config)?;
    cx.note(format!(
        "{primary}: wal_keep_size 16 MB, max_slot_wal_keep_size 64 MB ({config})"
    ));
    let result = drill(cx, hooks, primary, standby);
    faults::converge_with(primary, &layout.config)?;
    primary.run(&["rm", "-f", &config])?;
    result?;
    faults::all_healthy(cx, faults::HEAL)
}

fn drill(cx: &Ctx, hooks: &dyn faults::Faults, primary: &Node, standby: &Node) -> Result<()> {
    let backup = cx.cluster.backup();
    let server = cx.cluster.config.barman.server.as_str().to_string();
    let slots = [
        faults::standby_slot(cx, standby)?,
        cx.cluster.config.barman.slot.as_str().to_string(),
    ];
    let load = faults::start_load(cx, "e2e_fault_slot_lost", 30)?;
    faults::hook("power off the standby", hooks.power_off(&standby.name))?;
    let undo = faults::Undo::power(hooks, &standby.name);
    let hung = Hang::receivewal(backup)?;
    dropped_by_timeout(cx, primary, &slots[1])?;
    faults::write_wal(primary, 112)?;
    invalidated(primary, &slots)?;
    status_names_lost_slots(cx, primary, &slots)?;
    wal_bounded(cx, primary)?;
    let clock = Clock::start();
    hung.resume();
    faults::hook("boot the standby", hooks.boot(&standby.name))?;
    undo.done();
    let aside = reclone(standby)?;
    faults::caught_up(cx, standby, Duration::from_secs(120))?;
    let secs = clock.secs();
    cx.note(format!("{standby} re-cloned and streaming {secs:.1}s after boot; old data directory kept at {aside}"));
    let said = faults::rerun_ok(backup)?;
    ensure(
        said.contains("re-creating it"),
        "the backup role did not say it re-created Barman's invalidated slot",
        &said,
    )?;
    let secs_b = clock.secs();
    let reset = if said.contains("receive-wal --reset") {
        " and reset receive-wal (the WAL it asked for was gone)"
    } else {
        ""
    };
    cx.note(format!(
        "{backup}: the backup role re-created slot {}{reset}; receive-wal streaming {secs_b:.1}s after the resume",
        slots[1]
    ));
    load.finish(cx, false)?;
    let last = archive::close_and_archive(primary, faults::HEAL)?;
    let n = archive::wait_gapless(backup, &server, &last, faults::HEAL)?;
    cx.note(format!(
        "Barman's archive: {n} consecutive WAL files from the oldest backup's to {last}, no gap (archive_command filled what streaming missed)"
    ));
    // pgnode never deletes it; the drill does, to keep the lab's disk bounded.
    standby.run(&["rm", "-rf", "--one-file-system", &aside])?;
    faults::table_line(
        cx,
        "standby and Barman slots lost (max_slot_wal_keep_size)",
        "master: status names each lost slot and its repair, pg_wal stays bounded; slave role: detects it (READ_REPLICATION_SLOT, WAL receiver log), re-clones, keeps the old data directory aside; backup role: re-creates Barman's slot, resets receive-wal",
        "wal_status lost for both; pg_wal <= bound; one rerun of each role converges and streams; Barman's archive gapless; every acknowledged commit present",
        Some(secs_b),
    );
    Ok(())
}

/// The primary drops the hung client after wal_sender_timeout: its slot goes inactive. Only then
/// is WAL written past the limit. (Invalidating a slot whose walsender is still attached makes
/// the checkpoint terminate that walsender and wait for it; a walsender blocked writing to a
/// client that reads nothing never exits, and the checkpoint waits with it.)
fn dropped_by_timeout(cx: &Ctx, primary: &Node, slot: &str) -> Result<()> {
    let t = primary.sql(
        "postgres",
        "select setting::bigint / 1000 from pg_settings where name = 'wal_sender_timeout'",
    )?;
    let t: u64 = t.parse().unwrap_or(60);
    let clock = Clock::start();
    let q = format!("select active from pg_replication_slots where slot_name = '{slot}'");
    primary.poll_until("postgres", &q, "f", Duration::from_secs(t + 60))?;
    cx.note(format!(
        "{primary} dropped the hung receive-wal after {:.1}s (wal_sender_timeout {t}s); slot {slot} inactive",
        clock.secs()
    ));
    Ok(())
}

/// Checkpoints (switching WAL) until every slot is invalidated. On PostgreSQL 17 with
/// summarize_wal = on, WAL goes only once the summarizer has read it, so the first checkpoint may
/// leave a slot 'unreserved'.
fn invalidated(primary: &Node, slots: &[String]) -> Result<()> {
    let names = slots.join("', '");
    let q = format!(
        "select string_agg(slot_name || '=' || coalesce(wal_status, '?'), ' ' order by slot_name) \
         from pg_replication_slots where slot_name in ('{names}')"
    );
    let what = format!(
        "{primary}: slots {} invalidated (wal_status 'lost'), a checkpoint each try",
        slots.join(", ")
    );
    wait_for(&what, Duration::from_secs(120), || {
        primary.sql("postgres", "select pg_switch_wal()")?;
        primary.sql("postgres", "checkpoint")?;
        let v = primary.sql("postgres", &q)?;
        if v.split(' ').filter(|s| s.ends_with("=lost")).count() == slots.len() {
            return Ok(Some(()));
        }
        pending(v)
    })
}

/// The primary's status fails and names each lost slot with the role rerun that repairs it.
fn status_names_lost_slots(cx: &Ctx, primary: &Node, slots: &[String]) -> Result<()> {
    let status = primary.pgnode(&["status"])?;
    ensure(
        !status.success(),
        format!("{primary}'s status must fail while slots are lost"),
        status.combined(),
    )?;
    for (slot, repair) in slots.iter().zip(["--role slave", "--role backup"]) {
        let line = status
            .stdout
            .lines()
            .find(|l| l.contains(&format!("slot {slot} ")) && l.contains("LOST"));
        ensure(
            line.is_some_and(|l| l.contains(repair)),
            format!("{primary}'s status must name slot {slot} as lost and say `pgnode {repair}` repairs it"),
            status.combined(),
        )?;
        cx.note(format!(
            "{primary} status names it: {}",
            line.unwrap_or("").trim()
        ));
    }
    Ok(())
}

/// pg_wal stays within max_wal_size + max_slot_wal_keep_size + wal_keep_size.
fn wal_bounded(cx: &Ctx, primary: &Node) -> Result<()> {
    let wal: u64 = primary
        .sql("postgres", "select sum(size)::bigint from pg_ls_waldir()")?
        .parse()
        .unwrap_or(0);
    let bound = primary.sql(
        "postgres",
        "select (select setting::bigint from pg_settings where name = 'max_wal_size') + (select setting::bigint from pg_settings where name = 'max_slot_wal_keep_size') + (select setting::bigint from pg_settings where name = 'wal_keep_size')",
    )?;
    let bound: u64 = bound.parse::<u64>().unwrap_or(0) * 1048576;
    ensure(
        wal <= bound,
        "the primary's pg_wal exceeds max_wal_size + max_slot_wal_keep_size + wal_keep_size",
        format!("{wal} > {bound}"),
    )?;
    cx.note(format!(
        "{primary} pg_wal: {} MB (bound {} MB)",
        wal / 1048576,
        bound / 1048576
    ));
    Ok(())
}

/// Reruns the slave role on the booted standby: it must re-clone, say why, and name where the
/// old data directory went (which must still hold it). Returns that path.
fn reclone(standby: &Node) -> Result<String> {
    let out = standby.pgnode(&["--role", standby.role.as_str()])?;
    let said = out.combined();
    if !out.success() || !said.contains(" failed=0 ") {
        return fail(
            format!("rerunning the slave role on {standby} did not repair it"),
            said,
        );
    }
    ensure(
        said.contains("clone again"),
        "the slave role did not say why it re-cloned",
        &said,
    )?;
    let Some(aside) = said
        .split_whitespace()
        .find(|w| w.contains(".pgnode-set-aside-"))
    else {
        return fail(
            "the slave role did not name where the old data directory is",
            said,
        );
    };
    let aside = aside.trim_end_matches([')', ',', '.']).to_string();
    standby.ok(&["test", "-f", &format!("{aside}/PG_VERSION")])?;
    Ok(aside)
}

/// Barman's pg_receivewal stopped (SIGSTOP): a hung WAL consumer whose slot stops advancing
/// while its process lives on, so Barman's cron does not restart it. Resumed on drop.
struct Hang<'a> {
    node: &'a Node,
    armed: bool,
}

impl<'a> Hang<'a> {
    fn receivewal(node: &'a Node) -> Result<Hang<'a>> {
        node.ok(&["pkill", "-STOP", "-x", "pg_receivewal"])?;
        Ok(Hang { node, armed: true })
    }
    fn resume(mut self) {
        self.cont();
    }
    fn cont(&mut self) {
        if self.armed {
            self.armed = false;
            let _ = self.node.run(&["pkill", "-CONT", "-x", "pg_receivewal"]);
        }
    }
}

impl Drop for Hang<'_> {
    fn drop(&mut self) {
        self.cont();
    }
}
