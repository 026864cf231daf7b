//! Failover: the primary's postmaster is killed (-9) under load and kept down. Promise: the
//! standby refuses to promote without `--force-promote`, promotes with it (printing how far
//! behind it was), the old primary rejoins with pg_rewind, and `pgnode status` is healthy on
//! every node; one more run of every role changes nothing. Then the planned switch back to the
//! original topology, after which one more run changes nothing either.

use std::time::Duration;

use super::day2;
use crate::text::tail;
use crate::{ensure, fail, Ctx, Pgbench, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    day2::with_restore(cx, |cx| {
        let orig = day2::original(cx)?;
        let a = cx.cluster.primary().clone();
        let Some(b) = cx.cluster.standbys().first().map(|n| (*n).clone()) else {
            return fail("the config has no standby to fail over to", "");
        };
        let there = day2::with_master(&orig, &b.name);
        let path = day2::write_config(cx, day2::SWITCHED, &there)?;
        let pgbench = Pgbench::start(&a, 60, 4)?;
        a.poll_until(
            "postgres",
            "select sum(xact_commit) > 2000 from pg_stat_database",
            "t",
            Duration::from_secs(60),
        )?;
        a.kill9_postmaster()?;
        let _ = pgbench.finish();
        cx.note(format!(
            "{a}: postmaster killed with SIGKILL under pgbench, kept down"
        ));

        let refused = day2::role_run(&b, "master", &path, &[])?;
        ensure(
            !refused.success() && refused.combined().contains("--force-promote"),
            "the standby promoted (or failed otherwise) without --force-promote",
            tail(&refused.combined(), 20),
        )?;
        cx.note(format!("{b}: refuses to promote without --force-promote"));
        let out = day2::role_ok(cx, &b, "master", &path, &["--force-promote"])?;
        let Some(line) = out.lines().find(|l| l.starts_with("pgnode: promoting")) else {
            return fail(
                "--force-promote did not say how far behind the standby was",
                out,
            );
        };
        cx.note(format!("{b}: {}", line.trim()));
        day2::is_primary(&b)?;

        let out = day2::role_ok(cx, &a, "slave", &path, &[])?;
        let Some(line) = out.lines().find(|l| l.starts_with("pgnode: pg_rewind")) else {
            return fail("the old primary did not rejoin with pg_rewind", out);
        };
        cx.note(format!("{a}: {}", line.trim()));
        day2::role_ok(cx, cx.cluster.backup(), "backup", &path, &[])?;
        day2::streams_from(&a, &b)?;
        for n in cx.cluster.nodes() {
            let st = n.exec(&crate::Command::new(&[
                "pgnode", "status", "--config", &path,
            ]))?;
            ensure(
                st.success(),
                format!("pgnode status on {n} is not healthy after the failover"),
                st.combined(),
            )?;
        }
        cx.note("pgnode status healthy on every node after the failover");
        day2::converged(cx, &there, &path, "the failover and rejoin")?;
        // The switch back, here rather than in with_restore, so that it is asserted converged too.
        let back = day2::config_path(cx);
        day2::converge(cx, &orig, &back, &b.name, &[])?;
        day2::is_primary(&a)?;
        day2::converged(cx, &orig, &back, &format!("the switch back to {a}"))?;
        Ok(())
    })
}
