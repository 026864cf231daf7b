//! Monitoring (`"monitoring": {"enabled": true}`, the default): node_exporter on every node,
//! postgres_exporter on every PostgreSQL node (as the `pg_monitor` role [`MONITOR_USER`], over
//! loopback), pgnode's own view through node_exporter's textfile collector (a systemd timer runs
//! `pgnode status --prometheus`), and on the backup node Prometheus, scraping every node, with
//! pgnode's alert rules, and Alertmanager, sending to the receivers of the config.
//!
//! Every endpoint listens on the node's cluster address only, serves TLS with the node's
//! certificate from the cluster CA and demands basic auth (a bcrypt hash in `web.yml`; the
//! password is in secrets.json and in a 0600 file for Prometheus, never on a command line or in
//! a unit). Debian starts a daemon when its package is installed, on every address with no
//! authentication: the packages are installed with a `policy-rc.d` that forbids starts, and each
//! daemon is started only once its files are in place. Off removes pgnode's units and stops the
//! daemons; the packages stay.
//!
//! [`MONITOR_USER`]: crate::config::Cluster::MONITOR_USER

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Cluster, Role};
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::step::{Check, Step};
use crate::templates::Templates;
use crate::{render, system, Ctx, Error, Result};

/// Where pgnode keeps the monitoring endpoints' TLS copy, web config and password files.
pub const DIR: &str = "/etc/pgnode/monitoring";
/// node_exporter's textfile collector directory (Debian's default).
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";
/// The basic-auth user of every endpoint.
pub const WEB_USER: &str = "pgnode";
/// Where the metrics timer finds pgnode (the Vagrantfile and the Ansible role install it here).
pub const PGNODE_BIN: &str = "/usr/local/bin/pgnode";
/// How often `pgnode status --prometheus` refreshes the metrics.
pub const REFRESH_SECONDS: u32 = 30;
/// The ports: node_exporter, postgres_exporter, Prometheus, Alertmanager.
pub const NODE_PORT: u16 = 9100;
pub const POSTGRES_PORT: u16 = 9187;
pub const PROMETHEUS_PORT: u16 = 9090;
pub const ALERTMANAGER_PORT: u16 = 9093;
/// The metrics timer and its service.
pub const TIMER: &str = "pgnode-metrics.timer";
const UNIT_DIR: &str = "/etc/systemd/system";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// The daemons of a role, each with the files it reads (restarted when one changes).
pub fn daemons(role: Role) -> Vec<(&'static str, Vec<String>)> {
    let web = || {
        vec![
            format!("{DIR}/web.yml"),
            format!("{DIR}/web.crt"),
            format!("{DIR}/web.key"),
        ]
    };
    let with = |mut v: Vec<String>, more: &[&str]| {
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let mut d = vec![(
        "prometheus-node-exporter",
        with(web(), &["/etc/default/prometheus-node-exporter"]),
    )];
    if role != Role::Backup {
        d.push((
            "prometheus-postgres-exporter",
            with(
                web(),
                &[
                    "/etc/default/prometheus-postgres-exporter",
                    &format!("{DIR}/postgres.pass"),
                ],
            ),
        ));
    } else {
        d.push((
            "prometheus",
            with(
                web(),
                &[
                    "/etc/default/prometheus",
                    "/etc/prometheus/prometheus.yml",
                    "/etc/prometheus/pgnode-alerts.yml",
                    &format!("{DIR}/web.pass"),
                ],
            ),
        ));
        d.push((
            "prometheus-alertmanager",
            with(
                web(),
                &[
                    "/etc/default/prometheus-alertmanager",
                    "/etc/prometheus/alertmanager.yml",
                ],
            ),
        ));
    }
    d
}

/// The packages of a role: the daemons, and whois for mkpasswd (the bcrypt hash).
pub fn packages(role: Role) -> Vec<String> {
    let mut p: Vec<String> = daemons(role).iter().map(|(u, _)| u.to_string()).collect();
    p.push("whois".into());
    p
}

/// The `policy-rc.d` pgnode writes for the length of an install (recognised by its content, so
/// that one left behind by an interrupted run is removed by the next).
const POLICY: &str =
    "#!/bin/sh\n# pgnode: no daemon starts while monitoring packages install\nexit 101\n";

fn policy_left_behind(ctx: &Ctx) -> bool {
    std::fs::read_to_string(ctx.path(Path::new(POLICY_RC_D))).is_ok_and(|t| t == POLICY)
}

/// Installs the monitoring packages without letting Debian start them (a `policy-rc.d` that
/// forbids every start exists for the length of the install, unless one was already there).
pub fn install(ctx: &Ctx) -> Step<'_> {
    let pkgs = packages(ctx.role);
    let (p1, p2) = (pkgs.clone(), pkgs.clone());
    Step::change(
        format!(
            "monitoring packages {} (not started by apt)",
            pkgs.join(" ")
        ),
        move || {
            let missing = system::missing_packages(&p1)?;
            Ok(if !missing.is_empty() {
                Check::Needs(format!("not installed: {}", missing.join(" ")))
            } else if policy_left_behind(ctx) {
                Check::Needs(format!("{POLICY_RC_D} left behind by an interrupted run"))
            } else {
                Check::Ok
            })
        },
        move || {
            let missing = system::missing_packages(&p2)?;
            let policy = ctx.path(Path::new(POLICY_RC_D));
            let ours = !policy.exists() || policy_left_behind(ctx);
            if ours {
                let spec = FileSpec::new(POLICY_RC_D, POLICY, "root", 0o755);
                crate::files::write(&ctx.root, &spec, true)?;
            }
            let r = if missing.is_empty() {
                Ok(())
            } else {
                system::apt_install(&missing)
            };
            if ours {
                std::fs::remove_file(&policy).map_err(|source| Error::Write {
                    path: policy.clone(),
                    source,
                })?;
            }
            r
        },
    )
}

/// `$2b$` bcrypt hash of the endpoints' password, with a salt derived from its own secret so
/// that every run renders the same `web.yml` (mkpasswd reads the password on stdin).
fn web_hash(ctx: &Ctx) -> Result<String> {
    let password = ctx.password(Cluster::WEB_PASSWORD)?;
    let salt_secret = ctx.password(Cluster::WEB_SALT)?;
    // A plan (dry run, or rendering into a scratch root as the golden tests do) may run where
    // whois is not installed; a real run installed it in the prepare steps.
    let planning = ctx.dry_run || ctx.root != Path::new("/");
    if ctx.plan_only || (planning && which::which("mkpasswd").is_err()) {
        return Ok("<bcrypt hash computed on the first run>".into());
    }
    let salt = bcrypt_salt(&salt_secret);
    let out = Cmd::new("mkpasswd")
        .args(["--method=bcrypt", "--rounds=10", "--stdin"])
        .arg(format!("--salt={salt}"))
        .stdin_secret(password)
        .run()?;
    let hash = out.stdout.trim().to_string();
    if !hash.starts_with("$2b$10$") || hash.len() != 60 {
        return Err(Error::Refused(format!(
            "mkpasswd did not print a bcrypt hash (got {} characters)",
            hash.len()
        )));
    }
    Ok(hash)
}

/// 22 characters of bcrypt's alphabet; the last one carries only 2 bits, so it is one of the
/// four characters whose low bits are zero.
pub fn bcrypt_salt(secret: &str) -> String {
    let mut s: String = secret
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(21)
        .collect();
    while s.len() < 21 {
        s.push('a');
    }
    s.push('e');
    s
}

/// The template data: the roles' data plus the monitoring section.
///
/// Errors: secrets or mkpasswd failures.
pub fn data(ctx: &Ctx) -> Result<Value> {
    let mut data = render::data(ctx)?;
    let m = &ctx.cluster.monitoring;
    let node = |n: &crate::config::Node| json!({"name": n.name, "address": n.address.to_string(), "role": n.role.as_str()});
    data["nodes"] = ctx.cluster.nodes().into_iter().map(node).collect();
    data["pg_nodes"] = ctx.cluster.pg_nodes().into_iter().map(node).collect();
    data["is_pg"] = (ctx.role != Role::Backup).into();
    data["is_backup"] = (ctx.role == Role::Backup).into();
    data["config_path"] = ctx.config_path.to_string_lossy().into_owned().into();
    data["lb"] = "{{".into();
    data["rb"] = "}}".into();
    data["mon"] = json!({
        "dir": DIR,
        "textfile_dir": TEXTFILE_DIR,
        "user": WEB_USER,
        "hash": web_hash(ctx)?,
        "pg_user": Cluster::MONITOR_USER,
        "pgnode": PGNODE_BIN,
        "refresh_seconds": REFRESH_SECONDS,
        "stale_after_seconds": REFRESH_SECONDS * 6,
        "ports": {"node": NODE_PORT, "postgres": POSTGRES_PORT, "prometheus": PROMETHEUS_PORT, "alertmanager": ALERTMANAGER_PORT},
        "scrape_interval_seconds": m.scrape_interval_seconds,
        "alert_after_seconds": m.alert_after_seconds,
        "replay_lag_alert_seconds": m.replay_lag_alert_seconds,
        "slot_retained_alert_mb": m.slot_retained_alert_mb,
        "slot_retained_bytes": m.slot_retained_alert_mb * 1024 * 1024,
        "backup_age_alert_hours": m.backup_age_alert_hours,
        "backup_age_seconds": u64::from(m.backup_age_alert_hours) * 3600,
        "disk_used_alert_percent": m.disk_used_alert_percent,
        "certificate_expiry_alert_days": m.certificate_expiry_alert_days,
        "certificate_expiry_seconds": u64::from(m.certificate_expiry_alert_days) * 86_400,
        "retention_size_mb": m.retention_size_mb,
        "webhooks": m.webhooks,
        "email": m.email,
        "has_receivers": m.has_receivers(),
    });
    Ok(data)
}

/// Every monitoring file of this node, rendered before any is written.
///
/// Errors: template, secrets or mkpasswd failures.
pub fn files(ctx: &Ctx, t: &Templates) -> Result<Vec<FileSpec>> {
    let data = data(ctx)?;
    let (cert, key) = render::node_cert_key(ctx)?;
    let r = |name: &str| t.render(name, &data);
    let prom = "prometheus";
    // The CA file itself is every role's own (render::ca_file).
    let mut f = vec![
        FileSpec::new(format!("{DIR}/web.crt"), cert, "root", 0o644),
        FileSpec::new(format!("{DIR}/web.key"), key, prom, 0o600).secret(),
        FileSpec::new(
            format!("{DIR}/web.yml"),
            r("monitoring-web.yml")?,
            prom,
            0o600,
        ),
        FileSpec::new(
            "/etc/default/prometheus-node-exporter",
            r("node-exporter.default")?,
            "root",
            0o644,
        ),
        FileSpec::new(
            format!("{UNIT_DIR}/pgnode-metrics.service"),
            r("pgnode-metrics.service")?,
            "root",
            0o644,
        ),
        FileSpec::new(
            format!("{UNIT_DIR}/{TIMER}"),
            r("pgnode-metrics.timer")?,
            "root",
            0o644,
        ),
    ];
    if ctx.role == Role::Backup {
        f.extend([
            FileSpec::new(
                format!("{DIR}/web.pass"),
                ctx.password(Cluster::WEB_PASSWORD)?,
                prom,
                0o600,
            )
            .secret(),
            FileSpec::new(
                "/etc/default/prometheus",
                r("prometheus.default")?,
                "root",
                0o644,
            ),
            FileSpec::new(
                "/etc/default/prometheus-alertmanager",
                r("alertmanager.default")?,
                "root",
                0o644,
            ),
            FileSpec::new(
                "/etc/prometheus/prometheus.yml",
                r("prometheus.yml")?,
                "root",
                0o644,
            ),
            FileSpec::new(
                "/etc/prometheus/pgnode-alerts.yml",
                r("pgnode-alerts.yml")?,
                "root",
                0o644,
            ),
            FileSpec::new(
                "/etc/prometheus/alertmanager.yml",
                r("alertmanager.yml")?,
                "root",
                0o644,
            ),
        ]);
    } else {
        f.extend([
            FileSpec::new(
                format!("{DIR}/postgres.pass"),
                ctx.password(Cluster::MONITOR_USER)?,
                prom,
                0o600,
            )
            .secret(),
            FileSpec::new(
                "/etc/default/prometheus-postgres-exporter",
                r("postgres-exporter.default")?,
                "root",
                0o644,
            ),
        ]);
    }
    Ok(f)
}

/// The steps that converge monitoring on this node (after [`install`] in the prepare steps):
/// its files, each daemon running with them, the metrics timer. With monitoring off: the
/// daemons stopped and disabled, pgnode's units and metrics file removed.
///
/// Errors: rendering failures (before anything is written).
pub fn steps<'a>(ctx: &'a Ctx, t: &Templates) -> Result<Vec<Step<'a>>> {
    if !ctx.cluster.monitoring.enabled {
        return Ok(off(ctx));
    }
    let mut steps: Vec<Step<'a>> = files(ctx, t)?
        .into_iter()
        .map(|f| Step::file(ctx, f))
        .collect();
    for (unit, files) in daemons(ctx.role) {
        steps.push(running_current(ctx, unit, files));
    }
    steps.push(running_current(
        ctx,
        TIMER,
        vec![
            format!("{UNIT_DIR}/{TIMER}"),
            format!("{UNIT_DIR}/pgnode-metrics.service"),
        ],
    ));
    Ok(steps)
}

/// When a unit last entered the active state, in unix seconds (None: never, or not loaded).
fn active_since(unit: &str) -> Result<Option<u64>> {
    let out = Cmd::new("systemctl")
        .args([
            "show",
            "--timestamp=unix",
            "-P",
            "ActiveEnterTimestamp",
            unit,
        ])
        .probe()?;
    Ok(out
        .stdout
        .trim()
        .strip_prefix('@')
        .and_then(|s| s.parse().ok()))
}

fn mtime(ctx: &Ctx, path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(ctx.path(Path::new(path)))
        .ok()
        .and_then(|m| u64::try_from(m.mtime()).ok())
}

/// A unit is enabled, active, and was (re)started after the last change of any file it reads.
fn running_current<'a>(ctx: &'a Ctx, unit: &'static str, files: Vec<String>) -> Step<'a> {
    Step::change(
        format!("service {unit} enabled, running, with its current files"),
        move || {
            let (enabled, active) = (
                system::service_enabled(unit)?,
                system::service_active(unit)?,
            );
            if !enabled || !active {
                return Ok(Check::Needs(format!("enabled={enabled} active={active}")));
            }
            let since = active_since(unit)?.unwrap_or(0);
            let newer: Vec<&str> = files
                .iter()
                .filter(|f| mtime(ctx, f).is_some_and(|m| m > since))
                .map(String::as_str)
                .collect();
            Ok(if newer.is_empty() {
                Check::Ok
            } else {
                Check::Needs(format!("changed since it started: {}", newer.join(", ")))
            })
        },
        move || {
            // A new or changed unit file of pgnode's own (the timer) must be loaded first.
            Cmd::new("systemctl").arg("daemon-reload").run()?;
            Cmd::new("systemctl").args(["enable", unit]).run()?;
            Cmd::new("systemctl").args(["restart", unit]).run()?;
            Ok(())
        },
    )
    .settles(Duration::from_secs(30))
}

/// Monitoring off: every daemon of the role stopped and disabled where installed, and pgnode's
/// own timer, service and metrics file gone.
fn off(ctx: &Ctx) -> Vec<Step<'_>> {
    let units: Vec<String> = daemons(ctx.role)
        .into_iter()
        .map(|(u, _)| u.to_string())
        .chain([TIMER.to_string()])
        .collect();
    let ours: Vec<PathBuf> = [
        format!("{UNIT_DIR}/{TIMER}"),
        format!("{UNIT_DIR}/pgnode-metrics.service"),
        format!("{TEXTFILE_DIR}/pgnode.prom"),
    ]
    .iter()
    .map(|p| ctx.path(Path::new(p)))
    .collect();
    let (u1, o1) = (units.clone(), ours.clone());
    vec![Step::change(
        "monitoring off: its daemons stopped and disabled, pgnode's metrics timer removed",
        move || {
            let mut on = Vec::new();
            for u in &u1 {
                if system::service_active(u)? || system::service_enabled(u)? {
                    on.push(u.clone());
                }
            }
            on.extend(
                o1.iter()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string()),
            );
            Ok(if on.is_empty() {
                Check::Ok
            } else {
                Check::Needs(format!("still there: {}", on.join(", ")))
            })
        },
        move || {
            for u in &units {
                if system::service_active(u)? || system::service_enabled(u)? {
                    Cmd::new("systemctl").args(["disable", "--now", u]).run()?;
                }
            }
            for p in ours.iter().filter(|p| p.exists()) {
                std::fs::remove_file(p).map_err(|source| Error::Write {
                    path: p.clone(),
                    source,
                })?;
            }
            Cmd::new("systemctl").arg("daemon-reload").run()?;
            Ok(())
        },
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_files_per_role() {
        use crate::golden;
        for role in [Role::Master, Role::Slave, Role::Backup] {
            let ctx = golden::ctx(role, 15);
            let files = files(&ctx, &Templates::new()).unwrap();
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/golden/monitoring-{role}"));
            golden::check(&dir, &files);
        }
    }

    #[test]
    fn receivers_come_from_the_config() {
        use crate::golden;
        let text = golden::SHIPPED.replacen(
            "\"barman\": {",
            "\"monitoring\": {\"webhooks\": [\"https://hooks.example.com/pg\"], \"email\": {\"to\": \"dba@example.com\", \"from\": \"pgnode@example.com\", \"smarthost\": \"mail.example.com:587\"}},\n  \"barman\": {",
            1,
        );
        let ctx = golden::ctx_for(&text, "backup", 15);
        let am = files(&ctx, &Templates::new())
            .unwrap()
            .into_iter()
            .find(|f| f.path.ends_with("alertmanager.yml"))
            .unwrap();
        let am = String::from_utf8(am.content).unwrap();
        assert!(
            am.contains("      - url: https://hooks.example.com/pg\n"),
            "{am}"
        );
        assert!(am.contains("      - to: dba@example.com\n"), "{am}");
        assert!(
            am.contains("  smtp_smarthost: mail.example.com:587\n"),
            "{am}"
        );
    }

    #[test]
    fn salt_is_22_bcrypt_characters_ending_in_a_zero_low_bits_character() {
        let s = bcrypt_salt("AbCdEfGhIjKlMnOpQrStUvWxYz0123456");
        assert_eq!(s.len(), 22);
        assert_eq!(&s[..21], "AbCdEfGhIjKlMnOpQrStU");
        assert!(s.ends_with('e'));
        assert_eq!(bcrypt_salt("short").len(), 22);
    }

    #[test]
    fn every_role_runs_node_exporter_and_its_own_daemons() {
        let names = |r| daemons(r).into_iter().map(|(u, _)| u).collect::<Vec<_>>();
        assert_eq!(
            names(Role::Master),
            ["prometheus-node-exporter", "prometheus-postgres-exporter"]
        );
        assert_eq!(names(Role::Slave), names(Role::Master));
        assert_eq!(
            names(Role::Backup),
            [
                "prometheus-node-exporter",
                "prometheus",
                "prometheus-alertmanager"
            ]
        );
        assert!(packages(Role::Backup).contains(&"whois".to_string()));
    }
}
