//! The slave (hot standby) role: PostgreSQL from Debian's archive, cloned from the master with
//! pg_basebackup through its own slot (`pg_slot_1` by default), the standby settings (standby.signal +
//! primary_conninfo + primary_slot_name, or recovery.conf for PostgreSQL <= 11), and proof
//! that it streams and answers read-only queries.

use std::path::PathBuf;

use pgnode_core::common;
use pgnode_core::ctx::POSTGRES_HOME;
use pgnode_core::files::FileSpec;
use pgnode_core::render::{self, PassEntry};
use pgnode_core::templates::Templates;
use pgnode_core::{Ctx, Result, Step};

mod clone;
pub mod rejoin;
pub mod repair;
mod slot_valid;
mod slots;
mod stale_wal;
pub mod status;

/// Packages the standby needs: a PostgreSQL node's (see [`common::server_packages`]).
pub fn packages(ctx: &Ctx) -> Vec<String> {
    common::server_packages(ctx)
}

/// Steps that must run before files can be rendered: packages and secrets.
pub fn prepare(ctx: &Ctx) -> Vec<Step<'_>> {
    common::prepare(ctx, packages(ctx))
}

/// Files in /etc and the postgres home; the standby marker in the data directory is separate
/// because it may only be written after the clone.
///
/// Errors: a template or secrets failure.
pub fn files(ctx: &Ctx, t: &Templates) -> Result<Vec<FileSpec>> {
    let data = render::data(ctx)?;
    let conf = ctx.conf_dir();
    let master = ctx.cluster.master.address.to_string();
    let user = ctx.cluster.replication.user.as_str();
    let pgpass = render::pgpass(
        ctx,
        t,
        &[
            PassEntry {
                host: master.clone(),
                database: "replication",
                user,
            },
            // pg_rewind's ordinary connection, when this node rejoins after a failover.
            PassEntry {
                host: master,
                database: "postgres",
                user,
            },
        ],
    )?;
    let mut files = render::server_files(ctx, t, &data)?;
    files.insert(
        0,
        FileSpec::new(
            format!("{POSTGRES_HOME}/.pgpass"),
            pgpass,
            "postgres",
            0o600,
        )
        .secret(),
    );
    if ctx.major.get() >= 12 {
        files.push(FileSpec::new(
            conf.join("conf.d/pgnode-standby.conf"),
            t.render("standby.conf", &data)?,
            "postgres",
            0o644,
        ));
    }
    Ok(files)
}

/// The file that makes the data directory a standby: `standby.signal` (>= 12) or
/// `recovery.conf` (<= 11).
///
/// Errors: a template failure.
pub fn standby_marker(ctx: &Ctx, t: &Templates) -> Result<FileSpec> {
    let dir = ctx.data_dir();
    Ok(if ctx.major.get() >= 12 {
        FileSpec::new(dir.join("standby.signal"), "", "postgres", 0o600)
    } else {
        FileSpec::new(
            dir.join("recovery.conf"),
            t.render("recovery.conf", &render::data(ctx)?)?,
            "postgres",
            0o600,
        )
    })
}

/// The converge steps after [`prepare`].
///
/// Errors: rendering failures (before anything is written).
pub fn converge<'a>(ctx: &'a Ctx, t: &Templates) -> Result<Vec<Step<'a>>> {
    let marker = standby_marker(ctx, t)?;
    let mut steps = vec![common::pg_cluster(ctx)];
    steps.extend(files(ctx, t)?.into_iter().map(|f| Step::file(ctx, f)));
    let state = std::rc::Rc::new(clone::MasterFacts::default());
    steps.push(clone::master_answers(ctx, state.clone()));
    steps.push(rejoin::rejoin_step(ctx, marker.clone()));
    steps.push(clone::clone_step(ctx, state.clone(), marker.clone()));
    steps.push(Step::file(ctx, marker.clone()));
    steps.push(common::service(ctx.service()));
    steps.push(common::pg_ready(ctx));
    steps.push(common::pg_settings_loaded(ctx));
    steps.push(slots::no_leftover_slots(ctx));
    steps.push(slot_valid::slot_valid(ctx));
    steps.push(clone::streaming(ctx, state, marker));
    steps.extend(pgnode_core::monitoring::steps(ctx, t)?);
    Ok(steps)
}

/// Where a data directory that is set aside goes: beside it, never deleted.
pub fn set_aside_path(data_dir: &std::path::Path, epoch: u64) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    data_dir.with_file_name(format!("{name}.pgnode-set-aside-{epoch}"))
}

#[cfg(test)]
mod tests;
