//! Validation of single values: PostgreSQL and Barman settings, user and slot names, and the
//! formats Barman and cron accept (rejected here, not at 3 a.m.).

use super::raw::{RawBarman, RawPostgres};
use super::validate::V;
use super::*;

pub(super) fn validate_postgres(raw: &RawPostgres, v: &mut V) -> Postgres {
    let major = match &raw.major {
        serde_json::Value::String(s) if s == "auto" => MajorSpec::Auto,
        serde_json::Value::Number(n) => match n
            .as_u64()
            .and_then(|x| u16::try_from(x).ok())
            .and_then(PgMajor::new)
        {
            Some(m) => MajorSpec::Fixed(m),
            None => {
                v.bad(
                    "postgresql.major",
                    format!("{n} is not a supported PostgreSQL major (10 to 17)"),
                );
                MajorSpec::Auto
            }
        },
        other => {
            v.bad(
                "postgresql.major",
                format!("{other} must be \"auto\" or a major version number such as 15"),
            );
            MajorSpec::Auto
        }
    };
    let port = match u16::try_from(raw.port) {
        Ok(p) if p >= 1024 => Port(p),
        _ => {
            v.bad(
                "postgresql.port",
                format!("{} is not a port from 1024 to 65535", raw.port),
            );
            Port(5432)
        }
    };
    // -1 (unlimited) lets an abandoned slot fill the primary's disk: pgnode insists on a bound.
    if raw.max_slot_wal_keep_size_mb < 64 {
        v.bad("postgresql.max_slot_wal_keep_size_mb", format!("{} must be a bound of at least 64 MB (unlimited lets an abandoned slot fill the primary's disk)", raw.max_slot_wal_keep_size_mb));
    }
    Postgres {
        major,
        port,
        max_wal_senders: raw.max_wal_senders,
        max_replication_slots: raw.max_replication_slots,
        wal_keep_size_mb: raw.wal_keep_size_mb,
        max_slot_wal_keep_size_mb: raw.max_slot_wal_keep_size_mb.max(0) as u64,
        hot_standby_feedback: raw.hot_standby_feedback,
    }
}

pub(super) fn validate_barman(raw: &RawBarman, v: &mut V) -> Barman {
    let server_ok = !raw.server.is_empty()
        && raw.server.len() <= 63
        && raw
            .server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !["barman", "all"].contains(&raw.server.as_str());
    if !server_ok {
        v.bad("barman.server", format!("{:?} is not a usable Barman server name (letters, digits, '-', '_'; not 'barman' or 'all')", raw.server));
    }
    if !is_retention_policy(&raw.retention_policy) {
        v.bad(
            "barman.retention_policy",
            format!(
                "{:?} is not 'REDUNDANCY n' or 'RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS'",
                raw.retention_policy
            ),
        );
    }
    if !is_age(&raw.last_backup_maximum_age) {
        v.bad(
            "barman.last_backup_maximum_age",
            format!(
                "{:?} is not 'n DAYS|WEEKS|MONTHS'",
                raw.last_backup_maximum_age
            ),
        );
    }
    if let Err(why) = rules::cron_schedule(&raw.restore_drill_schedule) {
        v.bad(
            "barman.restore_drill_schedule",
            format!(
                "{:?} is not a cron schedule cron would run, such as \"0 5 * * *\": {why}",
                raw.restore_drill_schedule
            ),
        );
    }
    if !raw.incremental_schedule.is_empty() {
        if let Err(why) = rules::cron_schedule(&raw.incremental_schedule) {
            v.bad(
                "barman.incremental_schedule",
                format!(
                    "{:?} is not empty (off) or a cron schedule cron would run, such as \"0 3 * * 1-6\": {why}",
                    raw.incremental_schedule
                ),
            );
        }
    }
    if let Err(why) = rules::cron_schedule(&raw.backup_schedule) {
        v.bad(
            "barman.backup_schedule",
            format!(
                "{:?} is not a cron schedule cron would run, such as \"0 3 * * *\": {why}",
                raw.backup_schedule
            ),
        );
    }
    Barman {
        server: raw.server.clone(),
        user: pg_user(&raw.user, "barman.user", v),
        streaming_user: pg_user(&raw.streaming_user, "barman.streaming_user", v),
        slot: slot(&raw.slot, "barman.slot", v),
        retention_policy: raw.retention_policy.to_uppercase(),
        minimum_redundancy: raw.minimum_redundancy,
        last_backup_maximum_age: raw.last_backup_maximum_age.to_uppercase(),
        backup_schedule: raw.backup_schedule.clone(),
        restore_drill_schedule: raw.restore_drill_schedule.clone(),
        incremental_schedule: raw.incremental_schedule.clone(),
    }
}

pub(super) fn cross_checks(r: &Replication, b: &Barman, v: &mut V) {
    let users = [
        ("replication.user", &r.user),
        ("barman.user", &b.user),
        ("barman.streaming_user", &b.streaming_user),
    ];
    for (i, (fa, a)) in users.iter().enumerate() {
        for (fb, bb) in &users[i + 1..] {
            if a == bb {
                v.bad(
                    *fb,
                    format!("{:?} is also {fa}: each needs its own role", a.0),
                );
            }
        }
    }
}

pub(super) fn pg_user(s: &str, field: &str, v: &mut V) -> PgUser {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with("pg_")
        && s != "postgres"
        && s != "public";
    if !ok {
        v.bad(field, format!("{s:?} is not a usable role name (lower-case letters, digits, '_'; not postgres, public or pg_*)"));
    }
    PgUser(s.to_string())
}

/// PostgreSQL's rule for slot names: lower-case letters, digits and underscores, at most 63.
pub(super) fn slot(s: &str, field: &str, v: &mut V) -> SlotName {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        v.bad(field, format!("{s:?} is not a valid replication slot name (PostgreSQL allows only a-z, 0-9 and '_', at most 63 characters)"));
    }
    SlotName(s.to_string())
}

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(super) fn is_age(s: &str) -> bool {
    let w: Vec<String> = s.split_whitespace().map(str::to_uppercase).collect();
    matches!(w.as_slice(), [n, unit] if is_count(n) && ["DAY", "DAYS", "WEEK", "WEEKS", "MONTH", "MONTHS"].contains(&unit.as_str()))
}

pub(super) fn is_retention_policy(s: &str) -> bool {
    let w: Vec<String> = s.split_whitespace().map(str::to_uppercase).collect();
    match w.as_slice() {
        [r, n] if r == "REDUNDANCY" => is_count(n),
        [r, wi, of, rest @ ..] if r == "RECOVERY" && wi == "WINDOW" && of == "OF" => {
            is_age(&rest.join(" "))
        }
        _ => false,
    }
}

pub(super) fn is_count(s: &str) -> bool {
    !s.is_empty() && s.len() < 6 && s.chars().all(|c| c.is_ascii_digit()) && s != "0"
}
