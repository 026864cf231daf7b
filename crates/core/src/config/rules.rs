//! Checks of the raw JSON that serde cannot name a field for, and the value rules that mirror
//! what cron, Barman and the pgnode binary itself would reject later (when rejection would come
//! too late: cron silently ignores a bad line, Barman fails at 3 a.m.).

use serde_json::Value;

use super::Problem;

/// The JSON type each key must have, per object (`nodes[]` for every node). Keys absent here
/// are left to the typed model (`postgresql.major` is a string or a number).
const TYPES: &[(&str, &[(&str, Kind)])] = &[
    (
        "",
        &[
            ("version", Kind::Uint),
            ("min_pgnode", Kind::Str),
            ("nodes", Kind::Array),
            ("network", Kind::Object),
            ("postgresql", Kind::Object),
            ("replication", Kind::Object),
            ("barman", Kind::Object),
            ("monitoring", Kind::Object),
            ("clients", Kind::Array),
        ],
    ),
    (
        "clients[]",
        &[
            ("user", Kind::Str),
            ("database", Kind::Str),
            ("hosts", Kind::Array),
        ],
    ),
    (
        "nodes[]",
        &[
            ("name", Kind::Str),
            ("role", Kind::Str),
            ("address", Kind::Str),
            ("slot", Kind::Str),
        ],
    ),
    ("network", &[("prefix", Kind::Uint)]),
    (
        "postgresql",
        &[
            ("port", Kind::Uint),
            ("max_wal_senders", Kind::Uint),
            ("max_replication_slots", Kind::Uint),
            ("wal_keep_size_mb", Kind::Uint),
            ("max_slot_wal_keep_size_mb", Kind::Int),
            ("hot_standby_feedback", Kind::Bool),
        ],
    ),
    (
        "replication",
        &[
            ("user", Kind::Str),
            ("slot", Kind::Str),
            ("synchronous", Kind::Bool),
        ],
    ),
    (
        "barman",
        &[
            ("server", Kind::Str),
            ("user", Kind::Str),
            ("streaming_user", Kind::Str),
            ("slot", Kind::Str),
            ("retention_policy", Kind::Str),
            ("minimum_redundancy", Kind::Uint),
            ("last_backup_maximum_age", Kind::Str),
            ("backup_schedule", Kind::Str),
        ],
    ),
    (
        "monitoring",
        &[
            ("enabled", Kind::Bool),
            ("scrape_interval_seconds", Kind::Uint),
            ("alert_after_seconds", Kind::Uint),
            ("replay_lag_alert_seconds", Kind::Uint),
            ("slot_retained_alert_mb", Kind::Uint),
            ("backup_age_alert_hours", Kind::Uint),
            ("disk_used_alert_percent", Kind::Uint),
            ("certificate_expiry_alert_days", Kind::Uint),
            ("retention_size_mb", Kind::Uint),
            ("webhooks", Kind::Array),
            ("email", Kind::Object),
        ],
    ),
    (
        "monitoring.email",
        &[
            ("to", Kind::Str),
            ("from", Kind::Str),
            ("smarthost", Kind::Str),
        ],
    ),
];

/// Keys without a default.
const REQUIRED: &[(&str, &[&str])] = &[
    ("", &["version", "nodes"]),
    ("nodes[]", &["name", "role", "address"]),
    ("clients[]", &["user", "database", "hosts"]),
];

#[derive(Clone, Copy)]
enum Kind {
    Uint,
    Int,
    Str,
    Bool,
    Array,
    Object,
}

impl Kind {
    fn fits(self, v: &Value) -> bool {
        match self {
            Kind::Uint => v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
            Kind::Int => v.as_i64().is_some(),
            Kind::Str => v.is_string(),
            Kind::Bool => v.is_boolean(),
            Kind::Array => v.is_array(),
            Kind::Object => v.is_object(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Uint => "a whole number from 0 to 4294967295",
            Kind::Int => "a whole number",
            Kind::Str => "a string",
            Kind::Bool => "true or false",
            Kind::Array => "a list",
            Kind::Object => "an object",
        }
    }
}

/// Every key of the wrong JSON type, and every required key that is missing, each naming its
/// field (serde's own message names neither the key nor the node).
pub(super) fn type_problems(root: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(top) = root.as_object() else {
        out.push(Problem {
            field: "(file)".into(),
            message: format!("must be a JSON object, not {}", short(root)),
        });
        return out;
    };
    object(top, "", "", &mut out);
    if let Some(nodes) = top.get("nodes").and_then(Value::as_array) {
        for (i, n) in nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            match n.as_object() {
                Some(m) => object(m, "nodes[]", &path, &mut out),
                None => out.push(Problem {
                    field: path,
                    message: format!(
                        "must be an object with name, role and address, not {}",
                        short(n)
                    ),
                }),
            }
        }
    }
    if let Some(clients) = top.get("clients").and_then(Value::as_array) {
        for (i, c) in clients.iter().enumerate() {
            let path = format!("clients[{i}]");
            match c.as_object() {
                Some(m) => {
                    object(m, "clients[]", &path, &mut out);
                    for (j, h) in m
                        .get("hosts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .filter(|(_, h)| !h.is_string())
                    {
                        out.push(Problem {
                            field: format!("{path}.hosts[{j}]"),
                            message: format!(
                                "must be a string (an IPv4 address), not {}",
                                short(h)
                            ),
                        });
                    }
                }
                None => out.push(Problem {
                    field: path,
                    message: format!(
                        "must be an object with user, database and hosts, not {}",
                        short(c)
                    ),
                }),
            }
        }
    }
    for section in [
        "network",
        "postgresql",
        "replication",
        "barman",
        "monitoring",
    ] {
        if let Some(m) = top.get(section).and_then(Value::as_object) {
            object(m, section, section, &mut out);
        }
    }
    if let Some(m) = top
        .get("monitoring")
        .and_then(|m| m.get("email"))
        .and_then(Value::as_object)
    {
        object(m, "monitoring.email", "monitoring.email", &mut out);
    }
    if let Some(hooks) = top
        .get("monitoring")
        .and_then(|m| m.get("webhooks"))
        .and_then(Value::as_array)
    {
        for (i, h) in hooks.iter().enumerate().filter(|(_, h)| !h.is_string()) {
            out.push(Problem {
                field: format!("monitoring.webhooks[{i}]"),
                message: format!("must be a string (a URL), not {}", short(h)),
            });
        }
    }
    out
}

fn object(m: &serde_json::Map<String, Value>, schema: &str, path: &str, out: &mut Vec<Problem>) {
    let field = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some((_, keys)) = TYPES.iter().find(|(s, _)| *s == schema) {
        for (k, kind) in keys.iter() {
            match m.get(*k) {
                Some(v) if !kind.fits(v) => out.push(Problem {
                    field: field(k),
                    message: format!("must be {}, not {}", kind.name(), short(v)),
                }),
                _ => {}
            }
        }
    }
    if let Some((_, keys)) = REQUIRED.iter().find(|(s, _)| *s == schema) {
        for k in keys.iter().filter(|k| !m.contains_key(**k)) {
            out.push(Problem {
                field: field(k),
                message: "is missing (it has no default)".into(),
            });
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..40])
    } else {
        s
    }
}

/// `min_pgnode`: the oldest pgnode that may apply this config (MAJOR.MINOR.PATCH). An older
/// binary refuses it instead of silently ignoring what it does not know about.
pub(super) fn min_pgnode(required: &str, running: &str) -> Option<String> {
    let Some(want) = semver(required) else {
        return Some(format!("{required:?} is not a version such as \"0.1.0\""));
    };
    let have = semver(running).unwrap_or((0, 0, 0));
    (have < want).then(|| {
        format!("this config needs pgnode {required} or newer; this binary is {running}: install a newer pgnode")
    })
}

fn semver(s: &str) -> Option<(u64, u64, u64)> {
    let p: Vec<u64> = s
        .split('.')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    match p.as_slice() {
        [a, b, c] => Some((*a, *b, *c)),
        _ => None,
    }
}

/// A five-field cron schedule as Debian's cron reads it: each field a list of `*`, `N`, `N-M`,
/// optionally `/STEP` (STEP >= 1), within the field's range; month and day-of-week names alone.
/// Returns what is wrong.
pub(super) fn cron_schedule(s: &str) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day of month", 1, 31, &[]),
        (
            "month",
            1,
            12,
            &[
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ],
        ),
        (
            "day of week",
            0,
            7,
            &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        ),
    ];
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "has {} fields; cron needs 5 (minute hour day-of-month month day-of-week)",
            parts.len()
        ));
    }
    for (part, (name, lo, hi, names)) in parts.iter().zip(FIELDS) {
        if names.contains(&part.to_ascii_lowercase().as_str()) {
            continue;
        }
        for item in part.split(',') {
            cron_item(item, lo, hi).map_err(|e| format!("{name} field {part:?}: {e}"))?;
        }
    }
    Ok(())
}

fn cron_item(item: &str, lo: u32, hi: u32) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((r, st)) => (r, Some(st)),
        None => (item, None),
    };
    let num = |x: &str| -> Result<u32, String> {
        let n: u32 = x.parse().map_err(|_| format!("{x:?} is not a number"))?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is outside {lo}-{hi}"))
        }
    };
    if range != "*" {
        match range.split_once('-') {
            Some((a, b)) if num(a)? > num(b)? => {
                return Err(format!("range {range} runs backwards"))
            }
            Some(_) => {}
            None => {
                num(range)?;
            }
        }
    }
    if let Some(st) = step {
        match st.parse::<u32>() {
            Ok(n) if n >= 1 && n <= hi.max(1) => {}
            _ => {
                return Err(format!(
                    "step /{st} must be a number from 1 to {}",
                    hi.max(1)
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules_cron_accepts_and_rejects() {
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 1-5/2 1,15 jan sun",
            "30 2 * * 1-5",
            "0 0 31 12 7",
        ] {
            assert_eq!(cron_schedule(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("61 3 * * *", "minute field \"61\": 61 is outside 0-59"),
            ("0 3 0 * *", "day of month field \"0\": 0 is outside 1-31"),
            ("*/0 * * * *", "step /0 must be"),
            ("0 24 * * *", "hour field \"24\""),
            ("0 3 * 13 *", "month field"),
            ("0 3 * * 8", "day of week field"),
            ("0 5-1 * * *", "runs backwards"),
            ("0 3 * *", "has 4 fields"),
            ("x 3 * * *", "\"x\" is not a number"),
        ] {
            let e = cron_schedule(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn min_pgnode_compares_versions() {
        assert_eq!(min_pgnode("0.1.0", "0.1.0"), None);
        assert_eq!(min_pgnode("0.0.9", "0.1.0"), None);
        assert!(min_pgnode("0.2.0", "0.1.0")
            .unwrap()
            .contains("needs pgnode 0.2.0 or newer"));
        assert!(min_pgnode("1.x", "0.1.0")
            .unwrap()
            .contains("is not a version"));
    }

    #[test]
    fn wrong_types_and_missing_keys_name_their_field() {
        let v: Value = serde_json::from_str(
            r#"{"version":"1","nodes":[{"name":"a","role":"master"},3],"postgresql":{"port":"5432","hot_standby_feedback":1}}"#,
        )
        .unwrap();
        let got: Vec<String> = type_problems(&v)
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        assert_eq!(
            got,
            [
                "version: must be a whole number from 0 to 4294967295, not \"1\"",
                "nodes[0].address: is missing (it has no default)",
                "nodes[1]: must be an object with name, role and address, not 3",
                "postgresql.port: must be a whole number from 0 to 4294967295, not \"5432\"",
                "postgresql.hot_standby_feedback: must be true or false, not 1",
            ]
        );
    }
}
