//! Rejoin: the config calls this node a standby, but its data directory was a primary of the
//! same cluster (a planned switchover, or a failover while it was down). Two ways back:
//!
//! - **Follow** (planned switchover, the new primary not promoted yet): stop cleanly (fast
//!   shutdown: walsenders ship the shutdown checkpoint first), prove with `pg_controldata` that
//!   the new primary has received past our "Latest checkpoint location", create our slot on it
//!   and start as its standby. It streams from it (cascading) until it is promoted, then
//!   follows the new timeline (`recovery_target_timeline = 'latest'`). The new primary only
//!   promotes once it sees us streaming from it: proof that it holds all of our WAL.
//! - **Rewind** (the new primary is already promoted, or we crashed): `pg_rewind` from the new
//!   primary (it says "no rewind required" when our WAL is a prefix of its history), then start
//!   as its standby. When rewind cannot work, `--reclone` clones afresh and sets this data
//!   directory aside.

use std::time::Duration;

use pgnode_core::exec::Cmd;
use pgnode_core::files::{self, FileSpec};
use pgnode_core::step::{Check, Step};
use pgnode_core::{common, pg, system, Ctx, Error, Result};

/// What the local data directory and server say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// `PG_VERSION` exists.
    pub has_cluster: bool,
    /// standby.signal / recovery.conf exists.
    pub marker: bool,
    /// The server runs and is not in recovery.
    pub running_primary: bool,
    /// `pg_controldata`'s "Database cluster state".
    pub state: String,
    pub system_id: String,
}

/// What the upstream (the config's master) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub system_id: String,
    /// Still a standby (not promoted yet).
    pub in_recovery: bool,
}

/// What this run does about a former primary's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoin {
    /// Not a former primary of this cluster (a standby already, empty, or another cluster:
    /// the clone step decides).
    NotNeeded,
    /// Stop cleanly and follow the not-yet-promoted new primary.
    Follow,
    /// pg_rewind from the promoted new primary, then follow it.
    Rewind,
    Refuse(String),
}

/// Decides, from facts only (unit tested).
pub fn plan(local: &Local, up: &Upstream, master: &str) -> Rejoin {
    if !local.has_cluster || local.marker || local.system_id != up.system_id {
        return Rejoin::NotNeeded;
    }
    if !up.in_recovery {
        return Rejoin::Rewind;
    }
    let clean = local.running_primary || local.state == "shut down";
    if clean {
        Rejoin::Follow
    } else {
        Rejoin::Refuse(format!(
            "this node was a primary and did not shut down cleanly (state: {}), and {master} is not promoted yet: \
             it cannot have all of this node's WAL. Promote {master} with `pgnode --role master --force-promote`, then rerun this role (it rewinds)",
            local.state
        ))
    }
}

fn local_facts(ctx: &Ctx) -> Result<Local> {
    let dir = ctx.path(&ctx.data_dir());
    let has_cluster = dir.join("PG_VERSION").exists();
    let marker = ["standby.signal", "recovery.conf"]
        .iter()
        .any(|m| dir.join(m).exists());
    if !has_cluster {
        return Ok(Local {
            has_cluster,
            marker,
            running_primary: false,
            state: String::new(),
            system_id: String::new(),
        });
    }
    let cd = pg::controldata(ctx, &ctx.data_dir())?;
    let running_primary =
        pg::local_ready(ctx)? && pg::scalar(&pg::local(ctx, "SELECT pg_is_in_recovery();"))? == "f";
    Ok(Local {
        has_cluster,
        marker,
        running_primary,
        state: cd
            .get("Database cluster state")
            .cloned()
            .unwrap_or_default(),
        system_id: cd
            .get("Database system identifier")
            .cloned()
            .unwrap_or_default(),
    })
}

/// IDENTIFY_SYSTEM on the upstream: (system id, timeline, its WAL position).
fn identify(ctx: &Ctx) -> Result<(String, String, u64)> {
    let host = ctx.cluster.master.address.to_string();
    let rows = pg::query(&pg::peer(ctx, &host, true, "IDENTIFY_SYSTEM;"))?;
    let r = rows.first().ok_or_else(|| Error::Parse {
        what: "IDENTIFY_SYSTEM".into(),
        detail: "no row".into(),
    })?;
    let lsn = r.get(2).and_then(|l| pg::parse_lsn(l)).unwrap_or(0);
    Ok((r[0].clone(), r.get(1).cloned().unwrap_or_default(), lsn))
}

fn upstream_facts(ctx: &Ctx) -> Result<Upstream> {
    let host = ctx.cluster.master.address.to_string();
    let (system_id, _, _) = identify(ctx)?;
    // SHOW works on a walsender connection; in_hot_standby exists from PostgreSQL 14.
    let hs = pg::scalar(&pg::peer(ctx, &host, true, "SHOW in_hot_standby;"))?;
    Ok(Upstream {
        system_id,
        in_recovery: hs == "on",
    })
}

/// The step: a former primary becomes a standby of the config's master.
pub fn rejoin_step(ctx: &Ctx, marker: FileSpec) -> Step<'_> {
    let m = &ctx.cluster.master;
    Step::change(
        format!("a former primary's data directory follows {}", m.name),
        move || {
            if ctx.reclone {
                return Ok(Check::Ok);
            }
            let master = ctx.cluster.master.name.as_str();
            Ok(
                match plan(&local_facts(ctx)?, &upstream_facts(ctx)?, master) {
                    Rejoin::NotNeeded => Check::Ok,
                    Rejoin::Follow => Check::Needs(format!(
                        "this node is a primary; the config makes it a standby of {master}: stop cleanly, check that {master} received our shutdown checkpoint, follow it"
                    )),
                    Rejoin::Rewind => Check::Needs(format!(
                        "this node was a primary; {master} is promoted: pg_rewind from it, then follow it"
                    )),
                    Rejoin::Refuse(why) => Check::Needs(format!("REFUSES: {why}")),
                },
            )
        },
        move || {
            let master = ctx.cluster.master.name.as_str();
            match plan(&local_facts(ctx)?, &upstream_facts(ctx)?, master) {
                Rejoin::NotNeeded => Ok(()),
                Rejoin::Refuse(why) => Err(Error::Refused(why)),
                Rejoin::Follow => follow(ctx, &marker),
                Rejoin::Rewind => rewind(ctx, &marker),
            }
        },
    )
}

/// Planned switchover, this node's half: clean stop, proof, slot, standby marker.
fn follow(ctx: &Ctx, marker: &FileSpec) -> Result<()> {
    let master = ctx.cluster.master.name.as_str();
    system::systemctl("stop", &ctx.service())?;
    let cd = pg::controldata(ctx, &ctx.data_dir())?;
    let state = cd
        .get("Database cluster state")
        .cloned()
        .unwrap_or_default();
    if state != "shut down" {
        return Err(Error::Refused(format!(
            "after stopping, the cluster state is {state:?}, not \"shut down\"; not following {master}"
        )));
    }
    let ckpt = cd
        .get("Latest checkpoint location")
        .cloned()
        .unwrap_or_default();
    let at = pg::parse_lsn(&ckpt).ok_or_else(|| Error::Parse {
        what: "pg_controldata Latest checkpoint location".into(),
        detail: ckpt.clone(),
    })?;
    // The shutdown checkpoint is our last record: the upstream has it once its position is past it.
    let (_, _, got) = identify(ctx)?;
    if got <= at {
        return Err(Error::Refused(format!(
            "{master} has received WAL only up to {:X}/{:X}, not past this node's shutdown checkpoint at {ckpt}: \
             it must not be promoted. This node stays stopped; fix replication to {master} (or revert the config) and rerun",
            got >> 32,
            got & 0xffff_ffff
        )));
    }
    eprintln!(
        "pgnode: shut down cleanly at checkpoint {ckpt}; {master} has received up to {:X}/{:X}",
        got >> 32,
        got & 0xffff_ffff
    );
    own_slot_on_upstream(ctx)?;
    files::write(&ctx.root, marker, true)?;
    Ok(())
}

/// Failover (or a late rejoin): pg_rewind from the promoted primary, then the standby marker.
fn rewind(ctx: &Ctx, marker: &FileSpec) -> Result<()> {
    let m = &ctx.cluster.master;
    if system::service_active(&ctx.service())? {
        system::systemctl("stop", &ctx.service())?;
    }
    let state = pg::controldata(ctx, &ctx.data_dir())?
        .get("Database cluster state")
        .cloned()
        .unwrap_or_default();
    if state != "shut down" && state != "shut down in recovery" {
        // pg_rewind would run crash recovery in single-user mode, which cannot find Debian's
        // postgresql.conf in /etc: finish crash recovery as a standby instead (it cannot
        // accept writes), then stop cleanly.
        files::write(&ctx.root, marker, true)?;
        system::systemctl("start", &ctx.service())?;
        common::wait_ready(
            ctx,
            "crash recovery of the former primary (as a standby)",
            Duration::from_secs(300),
        )?;
        system::systemctl("stop", &ctx.service())?;
    }
    let source = format!(
        "host={} port={} user={} dbname=postgres application_name=pgnode-rewind",
        m.address,
        ctx.port(),
        ctx.cluster.replication.user
    );
    let out = Cmd::new(ctx.bin("pg_rewind"))
        .user("postgres")
        .env("PGPASSFILE", pgnode_core::render::postgres_pgpass())
        .env("PGCONNECT_TIMEOUT", "10")
        // As every connection between nodes: the new primary proves itself with the cluster CA.
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", pgnode_core::tls::CA_FILE)
        .args(["--target-pgdata", &ctx.data_dir().to_string_lossy()])
        .arg(format!("--source-server={source}"))
        .probe()?;
    if !out.success() {
        return Err(Error::Refused(format!(
            "pg_rewind from {} failed: {}. To clone afresh (this data directory is set aside, not deleted): pgnode --role slave --reclone",
            m.name,
            out.stderr.trim()
        )));
    }
    eprintln!(
        "pgnode: pg_rewind: {}",
        out.stderr.trim().lines().last().unwrap_or("done")
    );
    crate::stale_wal::set_aside(ctx)?;
    own_slot_on_upstream(ctx)?;
    files::write(&ctx.root, marker, true)?;
    Ok(())
}

/// Creates this node's slot on the upstream over a replication connection (allowed on a
/// standby too), so that it can stream before the upstream's own master run creates it.
fn own_slot_on_upstream(ctx: &Ctx) -> Result<()> {
    let slot = ctx.node().standby_slot()?.as_str();
    let host = ctx.cluster.master.address.to_string();
    let out = pg::peer(
        ctx,
        &host,
        true,
        &format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL;"),
    )
    .probe()?;
    if out.success() || out.stderr.contains("already exists") {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "cannot create slot {slot} on {}: {}",
        ctx.cluster.master.name,
        out.stderr.trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(marker: bool, running_primary: bool, state: &str) -> Local {
        Local {
            has_cluster: true,
            marker,
            running_primary,
            state: state.into(),
            system_id: "42".into(),
        }
    }

    fn up(in_recovery: bool) -> Upstream {
        Upstream {
            system_id: "42".into(),
            in_recovery,
        }
    }

    #[test]
    fn a_standby_an_empty_directory_or_another_cluster_is_not_a_rejoin() {
        let s = local(true, false, "in archive recovery");
        assert_eq!(plan(&s, &up(false), "m"), Rejoin::NotNeeded);
        let mut e = local(false, false, "");
        e.has_cluster = false;
        assert_eq!(plan(&e, &up(true), "m"), Rejoin::NotNeeded);
        let mut other = local(false, true, "in production");
        other.system_id = "7".into();
        assert_eq!(plan(&other, &up(true), "m"), Rejoin::NotNeeded);
    }

    #[test]
    fn a_running_or_cleanly_stopped_primary_follows_a_standby_about_to_be_promoted() {
        assert_eq!(
            plan(&local(false, true, "in production"), &up(true), "m"),
            Rejoin::Follow
        );
        assert_eq!(
            plan(&local(false, false, "shut down"), &up(true), "m"),
            Rejoin::Follow
        );
    }

    #[test]
    fn after_promotion_a_former_primary_rewinds_clean_or_crashed() {
        for state in ["shut down", "in production"] {
            assert_eq!(
                plan(&local(false, false, state), &up(false), "m"),
                Rejoin::Rewind
            );
        }
        assert_eq!(
            plan(&local(false, true, "in production"), &up(false), "m"),
            Rejoin::Rewind
        );
    }

    #[test]
    fn a_crashed_primary_refuses_to_follow_an_unpromoted_standby() {
        match plan(&local(false, false, "in production"), &up(true), "slave") {
            Rejoin::Refuse(why) => {
                assert!(why.contains("did not shut down cleanly"), "{why}");
                assert!(why.contains("--force-promote"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
