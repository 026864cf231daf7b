//! Cloning the master: the guard that decides whether the local data directory already is a
//! standby of this master (same system identifier, standby marker present), and the clone
//! itself. A data directory is only deleted when it is Debian's freshly initialised `main`
//! with no user object in it; anything else is set aside beside it, never silently deleted.

use std::cell::OnceCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use pgnode_core::ctx::POSTGRES_HOME;
use pgnode_core::exec::Cmd;
use pgnode_core::files::{self, FileSpec};
use pgnode_core::step::{Check, Step};
use pgnode_core::{common, pg, system, wait, Ctx, Error, Result};

/// Facts learned from the master during the run.
#[derive(Default)]
pub struct MasterFacts {
    system_id: OnceCell<String>,
}

fn passfile() -> std::path::PathBuf {
    format!("{POSTGRES_HOME}/.pgpass").into()
}

/// IDENTIFY_SYSTEM over a replication connection as the standby's user: proves address,
/// pg_hba line, password and replication privilege at once. Ok(Err) means "not yet".
fn identify(ctx: &Ctx) -> Result<std::result::Result<String, String>> {
    let c = &ctx.cluster;
    let conninfo = format!(
        "host={} port={} user={} dbname=replication replication=true application_name=pgnode",
        c.master.address,
        ctx.port(),
        c.replication.user
    );
    let out = pg::remote("postgres", &conninfo, &passfile(), "IDENTIFY_SYSTEM;").probe()?;
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

/// Clones the master into the data directory unless it already is a standby of it (or
/// `--reclone` asks for a fresh clone, once per run).
pub fn clone_step(ctx: &Ctx, facts: Rc<MasterFacts>, marker: FileSpec) -> Step<'_> {
    let (f1, m1) = (facts.clone(), marker.clone());
    let cloned = Rc::new(std::cell::Cell::new(false));
    let cloned2 = cloned.clone();
    Step::change(
        format!(
            "data directory {} is a standby of {}",
            ctx.data_dir().display(),
            ctx.cluster.master.name
        ),
        move || {
            if ctx.reclone && !cloned.get() {
                return Ok(Check::Needs(
                    "--reclone: clone again, setting the current data directory aside".into(),
                ));
            }
            Ok(match not_a_standby_of_master(ctx, &f1, &m1)? {
                None => Check::Ok,
                Some(why) => Check::Needs(why),
            })
        },
        move || {
            system::systemctl("stop", &ctx.service())?;
            clear_data_dir(ctx)?;
            base_backup(ctx)?;
            files::write(&ctx.root, &marker, true)?;
            cloned2.set(true);
            Ok(())
        },
    )
}

/// Empties the data directory: deletes Debian's untouched fresh cluster, sets anything else aside.
fn clear_data_dir(ctx: &Ctx) -> Result<()> {
    let dir = ctx.path(&ctx.data_dir());
    let werr = |source| Error::Write {
        path: dir.clone(),
        source,
    };
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
        }
    }
    let _ = std::fs::remove_dir(&dir);
    std::fs::create_dir_all(&dir).map_err(werr)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(werr)?;
    let (u, g) = system::ids(&ctx.root, "postgres", "postgres")?;
    std::os::unix::fs::chown(&dir, Some(u), Some(g)).map_err(werr)?;
    Ok(())
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

/// pg_basebackup through the standby's slot. The slot can still look active for a moment after
/// a previous standby process stopped: that case is retried (bounded), nothing else is.
fn base_backup(ctx: &Ctx) -> Result<()> {
    let c = &ctx.cluster;
    let cmd = Cmd::new(ctx.bin("pg_basebackup"))
        .user("postgres")
        .env("PGPASSFILE", passfile().to_string_lossy())
        .env("PGCONNECT_TIMEOUT", "10")
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
        ]);
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

/// The standby is in recovery, its WAL receiver streams and it answers read-only queries.
pub fn streaming(ctx: &Ctx) -> Step<'_> {
    let probe = move || -> Result<std::result::Result<(), String>> {
        let q = "SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'no receiver'), current_setting('transaction_read_only');";
        let r = pg::query(&pg::local(ctx, q))?;
        let r = r.first().cloned().unwrap_or_default();
        Ok(if r == ["t", "streaming", "on"] {
            Ok(())
        } else {
            Err(format!("in_recovery, receiver, read_only = {r:?}"))
        })
    };
    Step::verify(
        "standby streams from the master and is read-only",
        move || {
            Ok(match probe()? {
                Ok(()) => Check::Ok,
                Err(e) => Check::Needs(e),
            })
        },
        move || {
            let slot = ctx.node().standby_slot()?.as_str();
            wait::until(
                "the standby to stream from the master",
                Duration::from_secs(180),
                Duration::from_secs(1),
                probe,
            ).map_err(|e| match e {
                Error::Timeout { .. } => Error::Refused(format!(
                    "{e}. If the master's slot {slot} was invalidated (`pgnode status` on the master shows wal_status=lost), \
                     run the master role, then `pgnode --role slave --reclone`"
                )),
                other => other,
            })
        },
    )
}
