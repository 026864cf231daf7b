//! The master (primary) role: PostgreSQL from Debian's archive, replication settings, pg_hba
//! lines per host and user, roles with SCRAM passwords, Barman's least-privilege grants, the
//! slots, and the SSH key archive_command uses to reach the backup node.

use pgnode_core::common;
use pgnode_core::config::{Cluster, Role};
use pgnode_core::ctx::POSTGRES_HOME;
use pgnode_core::files::FileSpec;
use pgnode_core::templates::Templates;
use pgnode_core::{monitoring, render, Ctx, Result, Step};

mod heartbeat;
pub mod promote;
mod sql;
pub mod status;

/// Packages the primary needs: a PostgreSQL node's, and cron for the heartbeat's schedule.
pub fn packages(ctx: &Ctx) -> Vec<String> {
    let mut pkgs = common::server_packages(ctx);
    pkgs.push("cron".into());
    pkgs
}

/// Steps that must run before files can be rendered: packages and secrets.
pub fn prepare(ctx: &Ctx) -> Vec<Step<'_>> {
    common::prepare(ctx, packages(ctx))
}

/// Every file the primary owns, rendered before any is written.
///
/// Errors: a template or secrets failure.
pub fn files(ctx: &Ctx, t: &Templates) -> Result<Vec<FileSpec>> {
    let data = render::data(ctx)?;
    let ssh = format!("{POSTGRES_HOME}/.ssh");
    let keys = &ctx.secrets()?.archive_ssh_key;
    let mut files = render::server_files(ctx, t, &data)?;
    files.extend([
        FileSpec::new(
            format!("{ssh}/id_ed25519"),
            keys.private.clone(),
            "postgres",
            0o600,
        )
        .dir_mode(0o700)
        .secret(),
        FileSpec::new(
            format!("{ssh}/id_ed25519.pub"),
            format!("{}\n", keys.public),
            "postgres",
            0o644,
        )
        .dir_mode(0o700),
        FileSpec::new(
            format!("{ssh}/known_hosts"),
            t.render("known_hosts", &data)?,
            "postgres",
            0o644,
        )
        .dir_mode(0o700),
        // Without this, ssh's UpdateHostKeys would append the backup's other host keys to
        // known_hosts on first use: a file pgnode owns would change behind its back.
        FileSpec::new(
            format!("{ssh}/config"),
            t.render("ssh_config", &data)?,
            "postgres",
            0o600,
        )
        .dir_mode(0o700),
        heartbeat::cron_file(ctx),
    ]);
    Ok(files)
}

/// The converge steps after [`prepare`].
///
/// Errors: rendering failures (before anything is written).
pub fn converge<'a>(ctx: &'a Ctx, t: &Templates) -> Result<Vec<Step<'a>>> {
    debug_assert_eq!(ctx.role, Role::Master);
    // Before any file changes: a standby the config now makes the master is promoted first.
    let mut steps = vec![common::pg_cluster(ctx), promote::promote(ctx)];
    steps.extend(files(ctx, t)?.into_iter().map(|f| Step::file(ctx, f)));
    steps.push(common::service(ctx.service()));
    steps.push(common::pg_ready(ctx));
    steps.push(common::pg_settings_loaded(ctx));
    let c = &ctx.cluster;
    steps.push(sql::role(ctx, c.replication.user.as_str(), true));
    steps.push(sql::role(ctx, c.barman.streaming_user.as_str(), true));
    steps.push(sql::role(ctx, c.barman.user.as_str(), false));
    steps.push(sql::barman_grants(ctx));
    steps.push(heartbeat::table(ctx));
    steps.push(common::service("cron".into()));
    steps.push(sql::rewind_grants(ctx));
    for s in c.standbys() {
        steps.push(sql::slot(ctx, s.standby_slot()?.as_str()));
    }
    steps.push(sql::slot(ctx, c.barman.slot.as_str()));
    // The monitoring role exists whether monitoring is on or not (no network pg_hba line: it
    // logs in over loopback only), so that turning monitoring on needs no rerun of this role.
    steps.push(sql::role(ctx, Cluster::MONITOR_USER, false));
    steps.push(sql::monitor_grants(ctx));
    // The applications: each a LOGIN role (nothing more) owning its database.
    for cl in &c.clients {
        steps.push(sql::role(ctx, cl.user.as_str(), false));
        steps.push(sql::database(ctx, &cl.database, cl.user.as_str()));
    }
    steps.extend(monitoring::steps(ctx, t)?);
    Ok(steps)
}

#[cfg(test)]
mod tests;
