//! The `monitoring` section: exporters on every node, Prometheus and Alertmanager on the backup
//! node, the alert thresholds and where alerts go. On by default.

use serde::{Deserialize, Serialize};

use super::validate::V;

/// The raw section as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMonitoring {
    pub(super) enabled: bool,
    pub(super) scrape_interval_seconds: u32,
    pub(super) alert_after_seconds: u32,
    pub(super) replay_lag_alert_seconds: u32,
    pub(super) slot_retained_alert_mb: u64,
    pub(super) backup_age_alert_hours: u32,
    pub(super) disk_used_alert_percent: u32,
    pub(super) certificate_expiry_alert_days: u32,
    pub(super) retention_size_mb: u32,
    pub(super) webhooks: Vec<String>,
    pub(super) email: Option<Email>,
}

impl Default for RawMonitoring {
    fn default() -> Self {
        RawMonitoring {
            enabled: true,
            scrape_interval_seconds: 15,
            alert_after_seconds: 60,
            replay_lag_alert_seconds: 300,
            slot_retained_alert_mb: 1024,
            // A daily backup (the default schedule) plus two hours of slack.
            backup_age_alert_hours: 26,
            disk_used_alert_percent: 85,
            certificate_expiry_alert_days: 30,
            retention_size_mb: 512,
            webhooks: Vec::new(),
            email: None,
        }
    }
}

/// Where Alertmanager sends e-mail: to, from, and the SMTP relay (`host:port`, no login).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub to: String,
    pub from: String,
    pub smarthost: String,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Monitoring {
    pub enabled: bool,
    pub scrape_interval_seconds: u32,
    /// How long a condition must hold before its alert fires (every rule's `for:`).
    pub alert_after_seconds: u32,
    pub replay_lag_alert_seconds: u32,
    pub slot_retained_alert_mb: u64,
    pub backup_age_alert_hours: u32,
    pub disk_used_alert_percent: u32,
    pub certificate_expiry_alert_days: u32,
    /// Prometheus' storage is bounded by size (`--storage.tsdb.retention.size`).
    pub retention_size_mb: u32,
    /// Alertmanager webhook receivers (http:// or https:// URLs).
    pub webhooks: Vec<String>,
    pub email: Option<Email>,
}

impl Monitoring {
    /// Whether any receiver is configured (else alerts stay in Prometheus and Alertmanager).
    pub fn has_receivers(&self) -> bool {
        !self.webhooks.is_empty() || self.email.is_some()
    }
}

/// No quotes, backslashes, spaces or control characters: safe inside YAML and systemd files.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '`' | '$'))
}

fn host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => plain(h) && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

pub(super) fn validate_monitoring(raw: &RawMonitoring, v: &mut V) -> Monitoring {
    let f = |k: &str| format!("monitoring.{k}");
    let mut range = |k: &str, val: u64, lo: u64, hi: u64| {
        if !(lo..=hi).contains(&val) {
            v.bad(f(k), format!("{val} is not from {lo} to {hi}"));
        }
    };
    range(
        "scrape_interval_seconds",
        raw.scrape_interval_seconds.into(),
        5,
        300,
    );
    range(
        "alert_after_seconds",
        raw.alert_after_seconds.into(),
        0,
        86_400,
    );
    range(
        "replay_lag_alert_seconds",
        raw.replay_lag_alert_seconds.into(),
        1,
        86_400 * 7,
    );
    range(
        "slot_retained_alert_mb",
        raw.slot_retained_alert_mb,
        16,
        1 << 30,
    );
    range(
        "backup_age_alert_hours",
        raw.backup_age_alert_hours.into(),
        1,
        24 * 400,
    );
    range(
        "disk_used_alert_percent",
        raw.disk_used_alert_percent.into(),
        1,
        99,
    );
    range(
        "certificate_expiry_alert_days",
        raw.certificate_expiry_alert_days.into(),
        1,
        3650,
    );
    range(
        "retention_size_mb",
        raw.retention_size_mb.into(),
        64,
        1 << 20,
    );
    for (i, w) in raw.webhooks.iter().enumerate() {
        let scheme = w.starts_with("http://") || w.starts_with("https://");
        if !scheme || !plain(w) || w.len() > 2048 {
            v.bad(
                format!("monitoring.webhooks[{i}]"),
                format!("{w:?} is not an http:// or https:// URL without quotes or spaces"),
            );
        }
    }
    if let Some(e) = &raw.email {
        for (k, val) in [("to", &e.to), ("from", &e.from)] {
            if !plain(val) || !val.contains('@') {
                v.bad(
                    f(&format!("email.{k}")),
                    format!("{val:?} is not an e-mail address"),
                );
            }
        }
        if !host_port(&e.smarthost) {
            v.bad(
                f("email.smarthost"),
                format!(
                    "{:?} is not host:port (the SMTP relay, such as \"mail.example.com:25\")",
                    e.smarthost
                ),
            );
        }
    }
    Monitoring {
        enabled: raw.enabled,
        scrape_interval_seconds: raw.scrape_interval_seconds,
        alert_after_seconds: raw.alert_after_seconds,
        replay_lag_alert_seconds: raw.replay_lag_alert_seconds,
        slot_retained_alert_mb: raw.slot_retained_alert_mb,
        backup_age_alert_hours: raw.backup_age_alert_hours,
        disk_used_alert_percent: raw.disk_used_alert_percent,
        certificate_expiry_alert_days: raw.certificate_expiry_alert_days,
        retention_size_mb: raw.retention_size_mb,
        webhooks: raw.webhooks.clone(),
        email: raw.email.clone(),
    }
}
