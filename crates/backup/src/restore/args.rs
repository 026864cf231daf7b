//! `pgnode restore` arguments: exactly one recovery target, well-formed values, and the choice
//! of the base backup to start from. Pure functions, so every refusal is unit tested.

use pgnode_core::common::days_from_civil;

use crate::barman::Backup;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay every archived WAL file, then promote.
    Latest,
    /// Stop before the first commit after this instant (normalized text, seconds since epoch).
    Time { text: String, epoch: i64 },
    /// Stop at this WAL position (normalized `X/Y`, and as a number for comparisons).
    Lsn { text: String, value: u64 },
    /// Stop at a restore point made with `pg_create_restore_point`.
    Name(String),
}

/// The raw flags as the CLI parsed them.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub latest: bool,
    pub target_time: Option<String>,
    pub target_lsn: Option<String>,
    pub target_name: Option<String>,
    pub backup: Option<String>,
    pub keep: bool,
}

/// A validated restore request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub target: Target,
    /// A Barman backup id or shortcut; `None`: chosen from the target.
    pub backup: Option<String>,
    pub keep: bool,
}

/// Validates the flags: exactly one target, each value well formed.
///
/// Errors: a message naming the flag and what is wrong with it (the CLI exits 2).
pub fn request(f: &Flags) -> Result<Request, String> {
    let given: Vec<&str> = [
        (f.latest, "--latest"),
        (f.target_time.is_some(), "--target-time"),
        (f.target_lsn.is_some(), "--target-lsn"),
        (f.target_name.is_some(), "--target-name"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if given.len() != 1 {
        let which = if given.is_empty() {
            "none was given".to_string()
        } else {
            format!("got {}", given.join(" and "))
        };
        return Err(format!(
            "say where recovery stops: exactly one of --latest, --target-time T, --target-lsn L, --target-name N ({which})"
        ));
    }
    let target = if let Some(t) = &f.target_time {
        parse_time(t)?
    } else if let Some(l) = &f.target_lsn {
        parse_lsn(l)?
    } else if let Some(n) = &f.target_name {
        parse_name(n)?
    } else {
        Target::Latest
    };
    if let Some(b) = &f.backup {
        check_backup_id(b)?;
    }
    Ok(Request {
        target,
        backup: f.backup.clone(),
        keep: f.keep,
    })
}

fn digits(s: &str, n: usize, what: &str, min: u32, max: u32) -> Result<u32, String> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {s:?} is not {n} digits"));
    }
    let v: u32 = s.parse().map_err(|_| format!("{what} {s:?}"))?;
    if v < min || v > max {
        return Err(format!("{what} {v} is out of range {min}..{max}"));
    }
    Ok(v)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Splits a time zone suffix: `Z`, `UTC`, `+HH`, `+HHMM`, `+HH:MM` (or `-`). Returns the rest
/// and the offset in seconds east of UTC.
fn split_zone(s: &str) -> Option<(&str, i64)> {
    let s = s.trim_end();
    for utc in ["Z", "UTC", "+00", "+00:00"] {
        if let Some(rest) = s.strip_suffix(utc) {
            if !rest.ends_with(['+', '-']) {
                return Some((rest.trim_end(), 0));
            }
        }
    }
    let pos = s.rfind(['+', '-'])?;
    let (rest, zone) = s.split_at(pos);
    // The date's own hyphens are before the time part: a zone sign comes after a ':' field.
    if !rest.contains(':') {
        return None;
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let z = zone[1..].replace(':', "");
    if !(z.len() == 2 || z.len() == 4) || !z.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = z[..2].parse().ok()?;
    let m: i64 = if z.len() == 4 {
        z[2..].parse().ok()?
    } else {
        0
    };
    if h > 15 || m > 59 {
        return None;
    }
    Some((rest.trim_end(), sign * (h * 3600 + m * 60)))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` with a mandatory time zone. Without one Barman and
/// the restored server could read the same text in different zones.
pub fn parse_time(t: &str) -> Result<Target, String> {
    let bad = |why: String| {
        format!("--target-time {t:?}: {why}; expected 'YYYY-MM-DD HH:MM:SS[.ffffff]' and a time zone, e.g. '2026-11-26 10:49:46+00'")
    };
    let (rest, offset) =
        split_zone(t.trim()).ok_or_else(|| bad("no time zone (Z, UTC, +HH or +HH:MM)".into()))?;
    let (date, time) = rest
        .split_once([' ', 'T'])
        .ok_or_else(|| bad("no time of day".into()))?;
    let d: Vec<&str> = date.split('-').collect();
    let (clock, frac) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || c.len() != 3 {
        return Err(bad("malformed date or time of day".into()));
    }
    let y = digits(d[0], 4, "year", 1970, 9999).map_err(bad)?;
    let mo = digits(d[1], 2, "month", 1, 12).map_err(bad)?;
    let day = digits(d[2], 2, "day", 1, days_in_month(y, mo)).map_err(bad)?;
    let h = digits(c[0], 2, "hour", 0, 23).map_err(bad)?;
    let mi = digits(c[1], 2, "minute", 0, 59).map_err(bad)?;
    let s = digits(c[2], 2, "second", 0, 59).map_err(bad)?;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("fraction {f:?} is not 1 to 6 digits")));
        }
    }
    let local = days_from_civil(y.into(), mo.into(), day.into()) * 86400
        + i64::from(h * 3600 + mi * 60 + s);
    let zone = format!(
        "{}{:02}:{:02}",
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 3600,
        offset.abs() % 3600 / 60
    );
    let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
    Ok(Target::Time {
        text: format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}{frac}{zone}"),
        epoch: local - offset,
    })
}

/// Parses an LSN `X/Y` (1 to 8 hex digits each side).
pub fn parse_lsn(l: &str) -> Result<Target, String> {
    let value = lsn_value(l).ok_or_else(|| {
        format!("--target-lsn {l:?} is not a WAL position like '0/3000060' (hex/hex, up to 8 digits each)")
    })?;
    Ok(Target::Lsn {
        text: format!("{:X}/{:X}", value >> 32, value & 0xffff_ffff),
        value,
    })
}

/// An LSN as a number, `None` when it is not `X/Y` hex.
pub fn lsn_value(l: &str) -> Option<u64> {
    let (hi, lo) = l.trim().split_once('/')?;
    let ok = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A restore point name: what `pg_create_restore_point` accepts (under 64 bytes), without
/// quotes, backslashes or control characters (it is written into a config file).
pub fn parse_name(n: &str) -> Result<Target, String> {
    if n.is_empty() || n.len() > 63 {
        return Err(format!(
            "--target-name {n:?}: a restore point name has 1 to 63 bytes"
        ));
    }
    if n.chars().any(|c| c.is_control() || c == '\'' || c == '\\') {
        return Err(format!(
            "--target-name {n:?}: quotes, backslashes and control characters are not allowed"
        ));
    }
    Ok(Target::Name(n.to_string()))
}

/// A Barman backup id (`20261126T104900`) or one of Barman's shortcuts.
pub fn check_backup_id(b: &str) -> Result<(), String> {
    let shortcut = ["latest", "last", "oldest", "first"].contains(&b);
    let id = b.len() == 15
        && b.bytes().enumerate().all(|(i, c)| match i {
            8 => c == b'T',
            _ => c.is_ascii_digit(),
        });
    if shortcut || id {
        Ok(())
    } else {
        Err(format!(
            "--backup {b:?} is not a Barman backup id (like 20261126T104900) or latest, last, oldest, first"
        ))
    }
}

/// The backup to recover from: the given one (it must be DONE), else the newest DONE backup
/// that ended before a time target, else the newest DONE backup.
///
/// Errors: no DONE backup, the named one is not DONE, or none ended before the target time.
pub fn choose_backup(req: &Request, list: &[Backup]) -> Result<Backup, String> {
    let mut done: Vec<&Backup> = list.iter().filter(|b| b.status == "DONE").collect();
    // Backup ids are timestamps: sorted, the last is the newest.
    done.sort_by(|a, b| a.id.cmp(&b.id));
    let newest = || done.last().copied();
    let pick = match (req.backup.as_deref(), &req.target) {
        (Some("latest" | "last"), _) => newest(),
        (Some("oldest" | "first"), _) => done.first().copied(),
        (Some(id), _) => {
            return match list.iter().find(|b| b.id == id) {
                Some(b) if b.status == "DONE" => Ok(b.clone()),
                Some(b) => Err(format!("backup {id} is {}, not DONE", b.status)),
                None => Err(format!("there is no backup {id} (see barman list-backups)")),
            };
        }
        (None, Target::Time { text, epoch }) => {
            let before = done
                .iter()
                .rev()
                .find(|b| b.end_epoch.is_some_and(|e| (e as i64) < *epoch))
                .copied();
            if before.is_none() && !done.is_empty() {
                return Err(format!(
                    "no DONE backup ended before {text}: the oldest ended {}",
                    done[0].end_time
                ));
            }
            before
        }
        (None, _) => newest(),
    };
    pick.cloned()
        .ok_or_else(|| "there is no DONE backup to restore from".to_string())
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
