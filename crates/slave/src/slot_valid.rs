//! A standby streaming through a slot the master has invalidated. PostgreSQL (13 to 17) lets a
//! physical walsender stream through an invalidated slot as long as the WAL it is asked for
//! still exists: a standby that was off while `max_slot_wal_keep_size` invalidated its slot, and
//! whose restart point happened to be still in pg_wal (wal_keep_size), reconnects and streams as
//! if nothing happened. But the slot protects nothing any more (an invalidated slot is left out
//! of the WAL the master keeps), and the master shows it as `wal_status = unreserved` for as long
//! as it is used, which a clone cannot repair (the new standby streams through the same slot).
//! Seen in CI on Debian 13 after the `fault-slot-lost` drill.
//!
//! The repair, from the standby (its replication user may manage its own slot): stop the local
//! server, drop the slot once its walsender is gone, create it again reserving WAL from the
//! master's last checkpoint (which the standby has passed), start the server. The standby keeps
//! its data; nothing is re-cloned.

use std::time::Duration;

use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, system, wait, Ctx, Result};

use crate::clone::{master_sql, replication_psql};

/// How the standby's slot looks from the master, over a normal connection as its user.
fn query(ctx: &Ctx, slot: &str) -> Option<String> {
    // PostgreSQL 17 names the invalidation; 13 to 16 show an invalidated slot still in use as
    // `unreserved` with a positive safe_wal_size, which a slot that merely fell behind (and is
    // not invalidated) cannot have: unreserved means it retains more than the bound allows.
    let invalid = if ctx.major.get() >= 17 {
        "invalidation_reason IS NOT NULL"
    } else {
        "wal_status = 'lost' OR (wal_status = 'unreserved' AND coalesce(safe_wal_size, 0) > 0)"
    };
    let sql = format!(
        "SELECT ({invalid})::text, active::text FROM pg_replication_slots WHERE slot_name = '{slot}';"
    );
    let out = master_sql(ctx, &sql).probe().ok()?;
    if !out.success() {
        return None;
    }
    pg::rows(&out.stdout)
        .first()
        .map(|r| format!("{} {}", r[0], r.get(1).map_or("", |s| s.as_str())))
}

/// Whether the master says the slot is invalidated (false when it did not answer, or has no
/// such slot: other steps deal with those). READ_REPLICATION_SLOT cannot tell: a standby that
/// reconnects to an invalidated slot sets its restart_lsn again with its first reply, even when
/// the WAL it asks for is gone.
pub(crate) fn invalidated(ctx: &Ctx, slot: &str) -> bool {
    if ctx.major.get() < 13 {
        return false;
    }
    query(ctx, slot).is_some_and(|r| r.starts_with("true"))
}

/// The step, before the wait for streaming.
pub fn slot_valid(ctx: &Ctx) -> Step<'_> {
    Step::change(
        "the slot on the master is valid (not invalidated while streamed through)",
        move || {
            if ctx.major.get() < 13 {
                return Ok(Check::Ok);
            }
            let slot = ctx.node().standby_slot()?.as_str();
            Ok(if invalidated(ctx, slot) {
                Check::Needs(format!(
                    "the master invalidated slot {slot} (max_slot_wal_keep_size) but this standby still streams through it: it protects no WAL"
                ))
            } else {
                Check::Ok
            })
        },
        move || recreate(ctx),
    )
}

fn recreate(ctx: &Ctx) -> Result<()> {
    let slot = ctx.node().standby_slot()?.as_str();
    system::systemctl("stop", &ctx.service())?;
    drop_when_released(ctx, slot)?;
    replication_psql(
        ctx,
        &format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL;"),
    )
    .run()?;
    eprintln!(
        "pgnode: slot {slot} re-created on the master (it had been invalidated while in use)"
    );
    system::systemctl("start", &ctx.service())?;
    Ok(())
}

/// Drops the slot on the master once no walsender holds it (the walsender of a stopped
/// standby exits once it notices; bounded).
///
/// Errors: the wait timed out, or the master refused the drop.
pub(crate) fn drop_when_released(ctx: &Ctx, slot: &str) -> Result<()> {
    wait::until(
        &format!("slot {slot} to be released on the master"),
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            Ok(match query(ctx, slot) {
                Some(r) if r.ends_with(" true") => Err(format!("slot {slot}: {r}")),
                _ => Ok(()),
            })
        },
    )?;
    replication_psql(ctx, &format!("DROP_REPLICATION_SLOT {slot};")).run()?;
    Ok(())
}
