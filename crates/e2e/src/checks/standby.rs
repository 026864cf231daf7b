//! The standby is in recovery, streams, sees the primary's writes, and refuses its own.

use std::time::Duration;

use crate::{ensure, fail, token, Ctx, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    let primary = cx.cluster.primary();
    for standby in cx.cluster.standbys() {
        let out = standby.sql("postgres", "select pg_is_in_recovery()")?;
        ensure(
            out == "t",
            format!("{standby}: pg_is_in_recovery() is not true"),
            out,
        )?;
        standby.poll_until(
            "postgres",
            "select status from pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(60),
        )?;
        let t = token();
        primary.sql(
            "postgres",
            "create table if not exists e2e_replication (token text primary key, at timestamptz default now())",
        )?;
        primary.sql(
            "postgres",
            &format!("insert into e2e_replication (token) values ('{t}')"),
        )?;
        let count = format!("select count(*) from e2e_replication where token = '{t}'");
        standby.poll_until("postgres", &count, "1", Duration::from_secs(30))?;
        cx.note(format!("row written on {primary} visible on {standby}"));
        let out = standby.try_sql(
            "postgres",
            &format!("insert into e2e_replication (token) values ('x{t}')"),
        )?;
        let said = out.combined().trim_end().to_string();
        if out.success() {
            return fail(format!("a write on the standby {standby} succeeded"), said);
        }
        ensure(
            said.contains("read-only transaction"),
            format!("a write on {standby} failed, but not as read-only"),
            &said,
        )?;
        cx.note(format!("write on {standby} refused: {said}"));
    }
    Ok(())
}
