//! Cloning the master: the guard that decides whether the local data directory already is a
//! standby of this master (same system identifier, standby marker present), and the clone
//! itself. A data directory is only deleted when it is Debian's freshly initialised `main`
//! with no user object in it; anything else is set aside beside it, never silently deleted.

use std::cell::{Cell, OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use pgnode_core::ctx::POSTGRES_HOME;
use pgnode_core::exec::Cmd;
use pgnode_core::files::{self, FileSpec};
use pgnode_core::step::{Check, Step};
use pgnode_core::{common, pg, system, wait, Ctx, Error, Result};

/// Facts learned from the master during the run, and what this run's clone set aside.
#[derive(Default)]
pub struct MasterFacts {
    system_id: OnceCell<String>,
    /// Where a clone in this run moved the previous data directory (reported once it streams).
    set_aside: RefCell<Option<PathBuf>>,
    /// A clone ran in this run: never a second one.
    cloned: Cell<bool>,
}

fn passfile() -> std::path::PathBuf {
    format!("{POSTGRES_HOME}/.pgpass").into()
}

/// psql on a physical replication connection to the master as the standby's user (replication
/// commands only: IDENTIFY_SYSTEM, READ_REPLICATION_SLOT, DROP_REPLICATION_SLOT).
pub(crate) fn replication_psql(ctx: &Ctx, command: &str) -> Cmd {
    to_master(ctx, "dbname=replication replication=true", command)
}

/// psql on an ordinary connection to the master's `postgres` database as the standby's user
/// (its pg_hba line exists for pg_rewind): SQL the replication protocol cannot answer.
pub(crate) fn master_sql(ctx: &Ctx, sql: &str) -> Cmd {
    to_master(ctx, "dbname=postgres", sql)
}

fn to_master(ctx: &Ctx, db: &str, input: &str) -> Cmd {
    let c = &ctx.cluster;
    let conninfo = format!(
        "host={} port={} user={} {db} application_name=pgnode",
        c.master.address,
        ctx.port(),
        c.replication.user
    );
    pg::remote("postgres", &conninfo, &passfile(), input)
}

/// IDENTIFY_SYSTEM over a replication connection as the standby's user: proves address,
/// pg_hba line, password and replication privilege at once. Ok(Err) means "not yet".
fn identify(ctx: &Ctx) -> Result<std::result::Result<String, String>> {
    let out = replication_psql(ctx, "IDENTIFY_SYSTEM;").probe()?;
    if out.success() {
        let rows = pg::rows(&out.stdout);
        return match rows.first() {
            Some(r) if !r[0].is_empty() => Ok(Ok(r[0].clone())),
            _ => Err(Error::Parse {
                what: "IDENTIFY_SYSTEM".into(),
                detail: out.stdout,
            }),
        };
    }
    let err = out.stderr.trim().to_string();
    // Waiting does not fix a wrong password or a missing pg_hba line: fail at once.
    if err.contains("password authentication failed") || err.contains("no pg_hba.conf entry") {
        return Err(Error::Refused(format!(
            "the master refuses the standby's replication login: {err}"
        )));
    }
    Ok(Err(err))
}

/// Waits (bounded) until the master answers a replication connection, and learns its
/// system identifier.
pub fn master_answers(ctx: &Ctx, facts: Rc<MasterFacts>) -> Step<'_> {
    let f2 = facts.clone();
    let m = &ctx.cluster.master;
    Step::verify(
        format!(
            "master {} ({}) answers replication connections",
            m.name, m.address
        ),
        move || {
            Ok(match identify(ctx)? {
                Ok(id) => {
                    let _ = facts.system_id.set(id);
                    Check::Ok
                }
                Err(e) => Check::Needs(e),
            })
        },
        move || {
            let id = wait::until(
                "the master to answer a replication connection",
                Duration::from_secs(600),
                Duration::from_secs(3),
                || identify(ctx),
            )?;
            let _ = f2.system_id.set(id);
            Ok(())
        },
    )
}

/// Why the local data directory is not (yet) a standby of this master, if it is not.
fn not_a_standby_of_master(
    ctx: &Ctx,
    facts: &MasterFacts,
    marker: &FileSpec,
) -> Result<Option<String>> {
    let dir = ctx.path(&ctx.data_dir());
    if !dir.join("PG_VERSION").exists() {
        return Ok(Some(format!("{} holds no cluster", dir.display())));
    }
    if !ctx.path(&marker.path).exists() {
        return Ok(Some(format!(
            "not a standby: {} is missing",
            marker.path.display()
        )));
    }
    let master_id = facts
        .system_id
        .get()
        .ok_or_else(|| Error::Refused("master's system identifier unknown".into()))?;
    let local_id = pg::controldata(ctx, &ctx.data_dir())?
        .get("Database system identifier")
        .cloned()
        .unwrap_or_default();
    if &local_id != master_id {
        return Ok(Some(format!(
            "system identifier {local_id} is not the master's {master_id}"
        )));
    }
    Ok(None)
}

/// How long the clone check watches a running standby that does not stream for a definitive
/// failure (its WAL receiver retries every 5 s by default).
const SETTLE: Duration = Duration::from_secs(20);

/// Clones the master into the data directory unless it already is a standby of it that can
/// stream. A standby whose slot was invalidated, or whose WAL is gone from the master, is
/// cloned again (the previous data directory set aside); so is any with `--reclone`, once.
pub fn clone_step(ctx: &Ctx, facts: Rc<MasterFacts>, marker: FileSpec) -> Step<'_> {
    let (f1, m1) = (facts.clone(), marker.clone());
    Step::change(
        format!(
            "data directory {} is a standby of {} that can stream",
            ctx.data_dir().display(),
            ctx.cluster.master.name
        ),
        move || {
            if ctx.reclone && !f1.cloned.get() {
                return Ok(Check::Needs(
                    "--reclone: clone again, setting the current data directory aside".into(),
                ));
            }
            if let Some(why) = not_a_standby_of_master(ctx, &f1, &m1)? {
                return Ok(Check::Needs(why));
            }
            if f1.cloned.get() {
                return Ok(Check::Ok);
            }
            Ok(match crate::repair::blocker(ctx, SETTLE)? {
                None => Check::Ok,
                Some(why) => Check::Needs(format!("{why}: clone again")),
            })
        },
        move || reclone(ctx, &facts, &marker),
    )
}

/// Stops the server, sets the data directory aside (or deletes Debian's untouched fresh one),
/// releases an invalidated slot, clones through the slot (creating it when missing) and writes
/// the standby marker. The server is started by the steps after it.
///
/// Errors: the stop, the move, the slot or pg_basebackup failed (the previous data directory
/// stays where the message says).
pub(crate) fn reclone(ctx: &Ctx, facts: &MasterFacts, marker: &FileSpec) -> Result<()> {
    use crate::repair::SlotOnMaster;
    system::systemctl("stop", &ctx.service())?;
    let aside = clear_data_dir(ctx)?;
    *facts.set_aside.borrow_mut() = aside.clone();
    facts.cloned.set(true);
    let slot = ctx.node().standby_slot()?.as_str();
    let create_slot = match crate::repair::read_slot(ctx)? {
        SlotOnMaster::Invalidated => {
            crate::repair::drop_invalidated_slot(ctx)?;
            true
        }
        SlotOnMaster::Missing => true,
        // A restart_lsn does not prove the slot valid: the old standby's first reply set it
        // again on the invalidated slot. Cloning through it would leave the new standby
        // streaming through a slot that protects nothing.
        SlotOnMaster::Usable if crate::slot_valid::invalidated(ctx, slot) => {
            crate::slot_valid::drop_when_released(ctx, slot)?;
            true
        }
        SlotOnMaster::Usable | SlotOnMaster::Unknown => false,
    };
    base_backup(ctx, create_slot).map_err(|e| match &aside {
        Some(a) => Error::Refused(format!(
            "{e}\n  the previous data directory is kept at {}",
            a.display()
        )),
        None => e,
    })?;
    files::write(&ctx.root, marker, true)?;
    Ok(())
}

/// Where this run set the previous data directory aside, if it did.
pub fn set_aside(facts: &MasterFacts) -> Option<PathBuf> {
    facts.set_aside.borrow().clone()
}

/// Empties the data directory: deletes Debian's untouched fresh cluster, sets anything else
/// aside and returns where.
fn clear_data_dir(ctx: &Ctx) -> Result<Option<PathBuf>> {
    let dir = ctx.path(&ctx.data_dir());
    let werr = |source| Error::Write {
        path: dir.clone(),
        source,
    };
    let mut set_aside = None;
    if dir.exists() && std::fs::read_dir(&dir).map_err(werr)?.next().is_some() {
        if is_fresh_cluster(&dir)? {
            std::fs::remove_dir_all(&dir).map_err(werr)?;
        } else {
            let aside = crate::set_aside_path(&dir, common::now_epoch());
            std::fs::rename(&dir, &aside).map_err(werr)?;
            eprintln!(
                "pgnode: set the previous data directory aside as {} (not deleted)",
                aside.display()
            );
            set_aside = Some(aside);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    std::fs::create_dir_all(&dir).map_err(werr)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(werr)?;
    let (u, g) = system::ids(&ctx.root, "postgres", "postgres")?;
    std::os::unix::fs::chown(&dir, Some(u), Some(g)).map_err(werr)?;
    Ok(set_aside)
}

/// True only for a cluster that never held a user object: no standby or recovery marker, no
/// tablespace, and every relation file number below 16384 (FirstNormalObjectId), which is
/// what initdb leaves behind. Such a directory is Debian's fresh `main` and may be replaced.
pub fn is_fresh_cluster(dir: &Path) -> Result<bool> {
    if ["standby.signal", "recovery.signal", "recovery.conf"]
        .iter()
        .any(|m| dir.join(m).exists())
    {
        return Ok(false);
    }
    let entries = |p: &Path| -> Result<Vec<String>> {
        Ok(std::fs::read_dir(p)
            .map_err(|source| Error::Read {
                path: p.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    };
    if dir.join("pg_tblspc").exists() && !entries(&dir.join("pg_tblspc"))?.is_empty() {
        return Ok(false);
    }
    let number = |name: &str| {
        name.split(['_', '.'])
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    };
    for db in entries(&dir.join("base"))? {
        match number(&db) {
            Some(oid) if oid < 16384 => {}
            _ => return Ok(false),
        }
        for f in entries(&dir.join("base").join(&db))? {
            if let Some(n) = number(&f) {
                if n >= 16384 {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// pg_basebackup through the standby's slot (`create_slot`: create it, reserving WAL from the
/// backup's start). The slot can still look active for a moment after a previous standby
/// process stopped: that case is retried (bounded), nothing else is.
fn base_backup(ctx: &Ctx, create_slot: bool) -> Result<()> {
    let c = &ctx.cluster;
    let cmd = Cmd::new(ctx.bin("pg_basebackup"))
        .user("postgres")
        .env("PGPASSFILE", passfile().to_string_lossy())
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", pgnode_core::tls::CA_FILE)
        .args([
            "-h",
            &c.master.address.to_string(),
            "-p",
            &ctx.port().to_string(),
            "-U",
            c.replication.user.as_str(),
        ])
        .args([
            "-D",
            &ctx.data_dir().to_string_lossy(),
            "-X",
            "stream",
            "-S",
            ctx.node().standby_slot()?.as_str(),
            "-c",
            "fast",
            "-w",
            "--no-password",
        ])
        .args(if create_slot { vec!["-C"] } else { vec![] });
    wait::until(
        "the standby's slot to be free for pg_basebackup",
        Duration::from_secs(60),
        Duration::from_secs(2),
        || {
            let out = cmd.probe()?;
            if out.success() {
                return Ok(Ok(()));
            }
            // pg_basebackup removes what it wrote when it fails, so a retry starts empty.
            if out.stderr.contains("is active for PID") {
                return Ok(Err(out.stderr.trim().to_string()));
            }
            Err(cmd.failure(&out).into())
        },
    )
}

/// Whether the standby is in recovery, streams and is read-only (`Ok(Err(what it is))` if not).
fn streams(ctx: &Ctx) -> Result<std::result::Result<(), String>> {
    let q = "SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'no receiver'), current_setting('transaction_read_only');";
    let r = pg::query(&pg::local(ctx, q))?;
    let r = r.first().cloned().unwrap_or_default();
    Ok(if r == ["t", "streaming", "on"] {
        Ok(())
    } else {
        Err(format!("in_recovery, receiver, read_only = {r:?}"))
    })
}

/// The standby is in recovery, its WAL receiver streams and it answers read-only queries. If,
/// while it waits, the WAL receiver fails for good (invalidated slot, WAL gone), the standby is
/// cloned again on the spot (once per run); a data directory set aside in this run is named
/// once the new clone streams.
pub fn streaming(ctx: &Ctx, facts: Rc<MasterFacts>, marker: FileSpec) -> Step<'_> {
    Step::verify(
        "standby streams from the master and is read-only",
        move || {
            Ok(match streams(ctx)? {
                Ok(()) => Check::Ok,
                Err(e) => Check::Needs(e),
            })
        },
        move || {
            wait::until(
                "the standby to stream from the master",
                Duration::from_secs(180),
                Duration::from_secs(1),
                || {
                    let now = streams(ctx)?;
                    if now.is_err() && !facts.cloned.get() {
                        if let Some(why) = crate::repair::blocker(ctx, Duration::ZERO)? {
                            eprintln!("pgnode: {why}: cloning again");
                            reclone(ctx, &facts, &marker)?;
                            system::systemctl("start", &ctx.service())?;
                        }
                    }
                    Ok(now)
                },
            )?;
            if let Some(a) = set_aside(&facts) {
                eprintln!(
                    "pgnode: the new clone streams; the previous data directory is kept at {} (pgnode never deletes it)",
                    a.display()
                );
            }
            Ok(())
        },
    )
}
