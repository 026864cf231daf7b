//! The backup role: Barman from Debian's archive, streaming WAL through slot `barman` and
//! receiving WAL from archive_command over SSH (pinned host key, restricted key), base backups
//! with pg_basebackup on a schedule, retention, and the bring-up order that actually works:
//! cron, slot active, WAL switch with --archive, check, first backup, check again.

use pgnode_core::common;
use pgnode_core::ctx::BARMAN_HOME;
use pgnode_core::files::FileSpec;
use pgnode_core::render::{self, PassEntry};
use pgnode_core::templates::Templates;
use pgnode_core::{Ctx, Result, Step};

mod barman;
mod follow;
mod lost_tail;
mod receive;
pub mod restore;
pub mod status;

pub use barman::{parse_backups, parse_check, Backup, CheckLine};
pub use follow::{is_partial_duplicate, parse_backup_timeline, parse_show_backup_timeline};

/// Packages the backup node needs; the PostgreSQL client must match the server's major.
pub fn packages(ctx: &Ctx) -> Vec<String> {
    let m = ctx.major;
    [
        "barman",
        "barman-cli",
        "rsync",
        "cron",
        "openssh-server",
        "openssh-client",
        "openssl",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("postgresql-client-{m}")])
    .collect()
}

/// Steps that must run before files can be rendered: packages and secrets.
pub fn prepare(ctx: &Ctx) -> Vec<Step<'_>> {
    common::prepare(ctx, packages(ctx))
}

/// Every file the backup node owns, rendered before any is written.
///
/// Errors: a template or secrets failure.
pub fn files(ctx: &Ctx, t: &Templates) -> Result<Vec<FileSpec>> {
    if !ctx.cluster.barman.incremental_schedule.is_empty() && ctx.major.get() < 17 {
        return Err(pgnode_core::Error::Refused(format!(
            "barman.incremental_schedule: incremental backups need PostgreSQL >= 17 and Barman >= 3.11; this node has PostgreSQL {}",
            ctx.major
        )));
    }
    let mut data = render::data(ctx)?;
    // The drill's cron line runs pgnode with the config this run was given.
    data["config_path"] = ctx.config_path.to_string_lossy().into_owned().into();
    let b = &ctx.cluster.barman;
    let host = ctx.cluster.master.address.to_string();
    let pgpass = render::pgpass(
        ctx,
        t,
        &[
            PassEntry {
                host: host.clone(),
                database: "postgres",
                user: b.user.as_str(),
            },
            PassEntry {
                host,
                database: "replication",
                user: b.streaming_user.as_str(),
            },
        ],
    )?;
    let hostkey = &ctx.secrets()?.backup_host_key;
    Ok(vec![
        FileSpec::new(
            "/etc/barman.conf",
            t.render("barman.conf", &data)?,
            "root",
            0o644,
        ),
        FileSpec::new(
            format!("/etc/barman.d/{}.conf", b.server),
            t.render("barman-server.conf", &data)?,
            "root",
            0o644,
        ),
        FileSpec::new(format!("{BARMAN_HOME}/.pgpass"), pgpass, "barman", 0o600).secret(),
        FileSpec::new(
            format!("{BARMAN_HOME}/.ssh/authorized_keys"),
            t.render("authorized_keys", &data)?,
            "barman",
            0o600,
        )
        .dir_mode(0o700),
        FileSpec::new(
            "/etc/ssh/ssh_host_ed25519_key",
            hostkey.private.clone(),
            "root",
            0o600,
        )
        .secret(),
        FileSpec::new(
            "/etc/ssh/ssh_host_ed25519_key.pub",
            format!("{}\n", hostkey.public),
            "root",
            0o644,
        ),
        // Root-owned and not writable by barman: the account it restricts cannot change it.
        FileSpec::new(
            render::PUT_WAL_ONLY,
            t.render("put-wal-only", &data)?,
            "root",
            0o755,
        ),
        render::ca_file(ctx)?,
        FileSpec::new(
            "/etc/cron.d/pgnode-barman",
            t.render("barman-cron", &data)?,
            "root",
            0o644,
        ),
    ])
}

/// The converge steps after [`prepare`].
///
/// Errors: rendering failures (before anything is written).
pub fn converge<'a>(ctx: &'a Ctx, t: &Templates) -> Result<Vec<Step<'a>>> {
    let mut steps: Vec<Step<'a>> = files(ctx, t)?
        .into_iter()
        .map(|f| Step::file(ctx, f))
        .collect();
    steps.push(common::service("ssh".into()));
    steps.push(common::service("cron".into()));
    // Early: the alerts must work when a later step (Barman's) is what fails.
    steps.extend(pgnode_core::monitoring::steps(ctx, t)?);
    steps.push(barman::sshd_serves_pinned_key(ctx));
    steps.push(barman::master_login(ctx));
    steps.push(lost_tail::lost_partial_set_aside(ctx));
    steps.push(receive::receive_wal(ctx));
    steps.push(barman::wal_archived(ctx));
    // A change of primary can leave duplicates as the archiver catches up: before each check.
    steps.push(follow::partial_duplicates_set_aside(ctx));
    steps.push(barman::check(ctx, false));
    steps.push(follow::history_archived(ctx));
    steps.push(barman::first_backup(ctx));
    steps.push(follow::partial_duplicates_set_aside(ctx));
    steps.push(barman::check(ctx, true));
    Ok(steps)
}

#[cfg(test)]
mod tests;
