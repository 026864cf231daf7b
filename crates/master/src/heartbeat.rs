//! The heartbeat, in the spirit of pt-heartbeat: table `pgnode_heartbeat` (one row) in database
//! postgres, and a cron line that writes the time into it once a minute. A restore drill on the
//! backup node checks that a restored copy holds a value no older than its restore point allows,
//! which proves the WAL up to that point really was replayed.

use pgnode_core::files::FileSpec;
use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, Ctx};

/// The heartbeat table.
pub const TABLE: &str = "pgnode_heartbeat";

/// The cron file that beats once a minute (as postgres, over the local socket: peer auth).
pub fn cron_file(ctx: &Ctx) -> FileSpec {
    let text = format!(
        "# Managed by pgnode: the heartbeat. Once a minute the primary writes the time into {TABLE};\n\
         # the restore drill on the backup node checks that a restored copy holds a recent value.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n\
         * * * * * postgres psql -XAtq -p {} -d postgres -c \"INSERT INTO {TABLE} (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at\" >/dev/null\n",
        ctx.port()
    );
    FileSpec::new("/etc/cron.d/pgnode-heartbeat", text, "root", 0o644)
}

/// The table exists (created with its first beat, so a drill right after converging finds it).
pub fn table(ctx: &Ctx) -> Step<'_> {
    Step::change(
        format!("heartbeat table {TABLE}"),
        move || {
            let exists = pg::scalar(&pg::local(
                ctx,
                &format!("SELECT to_regclass('public.{TABLE}') IS NOT NULL;"),
            ))?;
            Ok(if exists == "t" {
                Check::Ok
            } else {
                Check::Needs("does not exist".into())
            })
        },
        move || {
            pg::local(
                ctx,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY CHECK (id = 1), at timestamptz NOT NULL); \
                     INSERT INTO {TABLE} VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at;"
                ),
            )
            .run()?;
            Ok(())
        },
    )
}
