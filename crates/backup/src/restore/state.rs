//! The restore drill's state file (JSON, written through the core file writer) and how
//! `pgnode status` judges it: the last drill must have passed and be younger than twice its
//! schedule's period.

use std::path::Path;

use pgnode_core::files::{self, FileSpec};
use pgnode_core::{Error, Result};

/// Where the last drill's result is kept on the backup node.
pub const STATE: &str = "/var/lib/pgnode/restore-drill.json";

/// One check of a drill.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrillCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The result of the last drill.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrillState {
    /// Start, seconds since the epoch.
    pub started: u64,
    pub ok: bool,
    pub seconds: f64,
    pub backup: String,
    /// Where recovery stopped: a restore point's name and time, or "latest".
    pub restore_point: String,
    pub checks: Vec<DrillCheck>,
    /// The newest backup that passed a drill: kept (`barman keep`) so that retention never
    /// deletes it; released when a newer one passes.
    pub kept_backup: Option<String>,
}

impl DrillState {
    /// The failing checks as one line.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads the state file; `None` when no drill ran yet.
///
/// Errors: [`Error::Parse`] when the file is not a drill state.
pub fn load(path: &Path) -> Result<Option<DrillState>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::Parse {
                what: path.display().to_string(),
                detail: e.to_string(),
            }),
        Err(_) => Ok(None),
    }
}

/// Writes the state file (root, 0644: status reads it, nothing secret in it).
///
/// Errors: [`Error::Write`].
pub fn save(path: &Path, s: &DrillState) -> Result<()> {
    let json = serde_json::to_string_pretty(s).unwrap_or_default() + "\n";
    files::write(
        Path::new("/"),
        &FileSpec::new(path, json, "root", 0o644),
        true,
    )?;
    Ok(())
}

/// The period of a five-field cron schedule, in seconds, from its coarsest restricted field:
/// a fixed minute and hour with day-of-week set is weekly, with day-of-month set monthly, and
/// so on. `*/n` steps count n units.
pub fn period_seconds(schedule: &str) -> u64 {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    if f.len() != 5 {
        return 86_400;
    }
    let step = |field: &str, unit: u64| -> Option<u64> {
        match field {
            "*" => Some(unit),
            _ => field
                .strip_prefix("*/")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| n * unit),
        }
    };
    if let Some(p) = step(f[0], 60) {
        return p;
    }
    if let Some(p) = step(f[1], 3600) {
        return p;
    }
    if f[3] != "*" {
        return 366 * 86_400;
    }
    if f[2] != "*" {
        return 31 * 86_400;
    }
    if f[4] != "*" {
        return 7 * 86_400;
    }
    86_400
}

/// UTC text of an epoch second ("2026-11-26 10:49:46 UTC").
pub fn utc(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The status line of the last drill and whether it is healthy at `now`.
pub fn judge(s: Option<&DrillState>, schedule: &str, now: u64) -> (String, bool) {
    // A new cluster is not unhealthy before its first scheduled drill.
    let Some(s) = s else {
        return (
            format!("none yet (scheduled {schedule}; pgnode restore --drill runs one now)"),
            true,
        );
    };
    let age = now.saturating_sub(s.started);
    let limit = 2 * period_seconds(schedule);
    let when = format!(
        "{} ({}h{:02}m ago), {:.1}s, backup {}, restore point {}",
        utc(s.started),
        age / 3600,
        age % 3600 / 60,
        s.seconds,
        s.backup,
        s.restore_point
    );
    if !s.ok {
        return (format!("FAILED {when}: {}", s.failures()), false);
    }
    if age > limit {
        return (
            format!("OK but stale: {when}; older than twice its schedule ({schedule})"),
            false,
        );
    }
    (format!("OK {when}"), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_of_schedules() {
        assert_eq!(period_seconds("0 5 * * *"), 86_400);
        assert_eq!(period_seconds("*/15 * * * *"), 900);
        assert_eq!(period_seconds("0 */6 * * *"), 6 * 3600);
        assert_eq!(period_seconds("30 * * * *"), 3600);
        assert_eq!(period_seconds("0 5 * * 1"), 7 * 86_400);
        assert_eq!(period_seconds("0 5 1 * *"), 31 * 86_400);
    }

    #[test]
    fn judges_failed_stale_and_fresh_drills() {
        assert_eq!(utc(1_795_690_186), "2026-11-26 10:49:46 UTC");
        assert!(judge(None, "0 5 * * *", 0).0.starts_with("none yet"));
        let mut s = DrillState {
            started: 1_000_000,
            ok: true,
            seconds: 12.5,
            backup: "20261126T105806".into(),
            restore_point: "latest".into(),
            ..Default::default()
        };
        let (line, ok) = judge(Some(&s), "0 5 * * *", 1_000_000 + 3600);
        assert!(ok && line.starts_with("OK 1970-01-12"), "{line}");
        let (line, ok) = judge(Some(&s), "0 5 * * *", 1_000_000 + 2 * 86_400 + 1);
        assert!(
            !ok && line.contains("older than twice its schedule"),
            "{line}"
        );
        s.ok = false;
        s.checks.push(DrillCheck {
            name: "barman verify-backup".into(),
            ok: false,
            detail: "checksum mismatch".into(),
        });
        let (line, ok) = judge(Some(&s), "0 5 * * *", 1_000_000 + 60);
        assert!(
            !ok && line.contains("FAILED")
                && line.contains("barman verify-backup: checksum mismatch"),
            "{line}"
        );
    }
}
