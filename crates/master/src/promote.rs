//! Promotion: the config calls this node the master, but it runs as a standby. A planned
//! switchover promotes only with proof that nothing is lost: the old primary (the node this
//! standby streamed from) now streams from this node, which it can only do once it has shut
//! down cleanly and this node holds all of its WAL (its rejoin checks "Latest checkpoint
//! location" against our position before following). Without that proof, promotion needs
//! `--force-promote` (failover: the old primary is gone), which is still refused while the
//! old primary answers as a primary, and which first prints how far behind this node was.

use pgnode_core::step::{Check, Step};
use pgnode_core::{pg, Ctx, Error, Result};

/// What the local server says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub running: bool,
    /// standby.signal exists.
    pub marker: bool,
    pub in_recovery: bool,
    /// The host in primary_conninfo: the old primary.
    pub upstream: Option<String>,
    /// (client address, state) of each walsender: who streams from this node.
    pub followers: Vec<(String, String)>,
    pub received: String,
    pub received_at: String,
    pub replayed: String,
    pub last_replayed_xact: String,
}

/// What this run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promote {
    Nothing,
    Promote(String),
    Refuse(String),
}

/// Decides from facts only (unit tested). `old_is_primary`: whether the old primary answers
/// as a primary (asked only with `force`).
pub fn decide(f: &Facts, old: &str, old_is_primary: Option<bool>, force: bool) -> Promote {
    if !f.running {
        return if f.marker {
            Promote::Refuse("this node is a standby that is not running: start it (it must replay what it received) and rerun".into())
        } else {
            Promote::Nothing
        };
    }
    if !f.in_recovery {
        return Promote::Nothing;
    }
    let up = f.upstream.clone().unwrap_or_else(|| "?".into());
    let streams = f
        .followers
        .iter()
        .any(|(a, s)| *a == up && s == "streaming");
    let behind = format!(
        "last WAL received up to {} (last message {}), replayed up to {}, last replayed transaction at {}",
        or_dash(&f.received),
        or_dash(&f.received_at),
        or_dash(&f.replayed),
        or_dash(&f.last_replayed_xact)
    );
    if streams {
        return Promote::Promote(format!(
            "the old primary {old} ({up}) streams from this node: it holds all of its WAL"
        ));
    }
    if !force {
        return Promote::Refuse(format!(
            "the old primary {old} ({up}) does not stream from this node, so it may hold WAL this node lacks. \
             Run its role first (`pgnode --role slave` on {old}: it shuts down cleanly and follows this node), then rerun this. \
             If {old} is gone for good, rerun with --force-promote (failover; {behind}: commits after that are lost)"
        ));
    }
    if old_is_primary == Some(true) {
        return Promote::Refuse(format!(
            "--force-promote refused: the old primary {old} ({up}) still answers as a primary; promoting would make two primaries. \
             Stop it, or run its role first (the config makes it a standby)"
        ));
    }
    Promote::Promote(format!(
        "--force-promote: the old primary {old} ({up}) is unreachable; this standby's {behind}"
    ))
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn facts(ctx: &Ctx) -> Result<Facts> {
    let marker = ctx
        .path(&ctx.data_dir())
        .join(if ctx.major.get() >= 12 {
            "standby.signal"
        } else {
            "recovery.conf"
        })
        .exists();
    if !pg::local_ready(ctx)? {
        return Ok(Facts {
            marker,
            ..Facts::default()
        });
    }
    let q = "SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), \
             coalesce(pg_last_wal_receive_lsn()::text, ''), \
             coalesce((SELECT last_msg_receipt_time::timestamp(0)::text FROM pg_stat_wal_receiver), ''), \
             coalesce(pg_last_wal_replay_lsn()::text, ''), \
             coalesce(pg_last_xact_replay_timestamp()::timestamp(0)::text, '');";
    let r = pg::query(&pg::local(ctx, q))?;
    let r = r.first().cloned().unwrap_or_default();
    let get = |i: usize| r.get(i).cloned().unwrap_or_default();
    let followers = pg::query(&pg::local(
        ctx,
        "SELECT host(client_addr), state FROM pg_stat_replication WHERE client_addr IS NOT NULL;",
    ))?
    .into_iter()
    .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
    .collect();
    Ok(Facts {
        running: true,
        marker,
        in_recovery: get(0) == "t",
        upstream: pg::conninfo_value(&get(1), "host").map(String::from),
        followers,
        received: get(2),
        received_at: get(3),
        replayed: get(4),
        last_replayed_xact: get(5),
    })
}

/// The old primary's name in the config (the node with the upstream address), or the address.
fn old_name(ctx: &Ctx, f: &Facts) -> String {
    let up = f.upstream.clone().unwrap_or_default();
    ctx.cluster
        .nodes()
        .iter()
        .find(|n| n.address.to_string() == up)
        .map(|n| n.name.to_string())
        .unwrap_or(up)
}

/// Whether the old primary answers as a primary (only asked with --force-promote).
fn old_is_primary(ctx: &Ctx, f: &Facts) -> Result<Option<bool>> {
    let (Some(up), true) = (&f.upstream, ctx.force_promote) else {
        return Ok(None);
    };
    let out = pg::peer(ctx, up, true, "SHOW in_hot_standby;").probe()?;
    Ok(Some(out.success() && out.stdout.trim() == "off"))
}

fn decision(ctx: &Ctx) -> Result<(Facts, Promote)> {
    let f = facts(ctx)?;
    let d = decide(
        &f,
        &old_name(ctx, &f),
        old_is_primary(ctx, &f)?,
        ctx.force_promote,
    );
    Ok((f, d))
}

/// The step: this node is a primary, promoted from standby when the config says so and it is safe.
pub fn promote(ctx: &Ctx) -> Step<'_> {
    Step::change(
        "this node is the primary (promoted when it was a standby)",
        move || {
            Ok(match decision(ctx)?.1 {
                Promote::Nothing => Check::Ok,
                Promote::Promote(why) => Check::Needs(format!("a standby: promote ({why})")),
                Promote::Refuse(why) => {
                    Check::Needs(format!("a standby: REFUSES to promote: {why}"))
                }
            })
        },
        move || match decision(ctx)?.1 {
            Promote::Nothing => Ok(()),
            Promote::Refuse(why) => Err(Error::Refused(why)),
            Promote::Promote(why) => {
                eprintln!("pgnode: promoting: {why}");
                let done = pg::scalar(&pg::local(ctx, "SELECT pg_promote(true, 120);"))?;
                if done != "t" {
                    return Err(Error::Refused(
                        "pg_promote() did not finish within 120 s".into(),
                    ));
                }
                // The standby settings point at the old primary; a primary ignores them, but
                // pgnode owns the file and a stale one would mislead.
                let f = ctx.path(&ctx.conf_dir().join("conf.d/pgnode-standby.conf"));
                if f.exists() {
                    std::fs::remove_file(&f).map_err(|source| Error::Write { path: f, source })?;
                }
                Ok(())
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(followers: &[(&str, &str)]) -> Facts {
        Facts {
            running: true,
            marker: true,
            in_recovery: true,
            upstream: Some("192.168.11.101".into()),
            followers: followers
                .iter()
                .map(|(a, s)| (a.to_string(), s.to_string()))
                .collect(),
            received: "0/5000060".into(),
            received_at: "2026-11-26 11:00:00".into(),
            replayed: "0/5000060".into(),
            last_replayed_xact: "2026-11-26 10:59:59".into(),
        }
    }

    #[test]
    fn a_running_primary_or_a_stopped_former_primary_needs_nothing() {
        let mut p = standby(&[]);
        p.in_recovery = false;
        assert_eq!(decide(&p, "m", None, false), Promote::Nothing);
        let stopped = Facts::default();
        assert_eq!(decide(&stopped, "m", None, false), Promote::Nothing);
    }

    #[test]
    fn a_stopped_standby_is_refused() {
        let f = Facts {
            marker: true,
            ..Facts::default()
        };
        assert!(
            matches!(decide(&f, "m", None, true), Promote::Refuse(w) if w.contains("not running"))
        );
    }

    #[test]
    fn switchover_promotes_once_the_old_primary_streams_from_here() {
        let f = standby(&[("192.168.11.101", "streaming")]);
        match decide(&f, "master", None, false) {
            Promote::Promote(why) => {
                assert!(why.contains("master (192.168.11.101) streams"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Catching up is not enough: it must be streaming, and it must be the old primary.
        for followers in [
            vec![("192.168.11.101", "catchup")],
            vec![("192.168.11.104", "streaming")],
        ] {
            let f = standby(&followers);
            match decide(&f, "master", None, false) {
                Promote::Refuse(why) => {
                    assert!(why.contains("does not stream from this node"), "{why}");
                    assert!(why.contains("--force-promote"), "{why}");
                    assert!(why.contains("0/5000060"), "{why}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn failover_needs_the_flag_and_an_old_primary_that_is_not_a_primary() {
        let f = standby(&[]);
        assert!(matches!(
            decide(&f, "master", Some(false), false),
            Promote::Refuse(_)
        ));
        match decide(&f, "master", Some(false), true) {
            Promote::Promote(why) => {
                assert!(why.contains("unreachable"), "{why}");
                assert!(
                    why.contains("received up to 0/5000060 (last message 2026-11-26 11:00:00)"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        match decide(&f, "master", Some(true), true) {
            Promote::Refuse(why) => assert!(why.contains("two primaries"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
