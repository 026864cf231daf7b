//! Steps more than one role uses: packages, secrets, the Debian cluster, services, and making
//! PostgreSQL load what its files say (reload, or restart only when `pending_restart` says so).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::step::{Check, Step};
use crate::{pg, secrets, system, wait, Ctx};

/// What every role does before it can render its files: install its packages, then load (or
/// generate) the secrets.
pub fn prepare(ctx: &Ctx, pkgs: Vec<String>) -> Vec<Step<'_>> {
    let mut steps = vec![packages(ctx, pkgs), secrets(ctx)];
    if ctx.cluster.monitoring.enabled {
        // Before rendering: the web config's bcrypt hash needs mkpasswd (whois).
        steps.push(crate::monitoring::install(ctx));
    }
    steps
}

/// What both PostgreSQL roles install (either may become the other on a switchover): the server,
/// barman-cli for `barman-wal-archive` (so a promotion never waits for apt: every second is
/// downtime), openssh-client and openssl to generate the cluster's secrets if it runs first.
pub fn server_packages(ctx: &Ctx) -> Vec<String> {
    let m = ctx.major;
    vec![
        format!("postgresql-{m}"),
        format!("postgresql-client-{m}"),
        "barman-cli".into(),
        "openssh-client".into(),
        "openssl".into(),
    ]
}

/// Installs `packages` from the distribution's archive when any is missing.
pub fn packages(ctx: &Ctx, packages: Vec<String>) -> Step<'_> {
    let _ = ctx;
    let list = packages.join(" ");
    let (p1, p2) = (packages.clone(), packages);
    Step::change(
        format!("packages {list}"),
        move || {
            let missing = system::missing_packages(&p1)?;
            Ok(if missing.is_empty() {
                Check::Ok
            } else {
                Check::Needs(format!("not installed: {}", missing.join(" ")))
            })
        },
        move || system::apt_install(&system::missing_packages(&p2)?),
    )
}

/// Loads the cluster's secrets, generating them if no node has yet (and the TLS material if
/// the file predates it).
pub fn secrets(ctx: &Ctx) -> Step<'_> {
    let nodes = secrets::tls_nodes(&ctx.cluster);
    let n2 = nodes.clone();
    Step::change(
        format!("secrets {}", ctx.secrets_path().display()),
        move || {
            Ok(
                match secrets::load_any(
                    &ctx.secrets_path(),
                    &ctx.users(),
                    &ctx.cluster.later_secret_names(),
                )? {
                    Some(s) => match (
                        s.tls_for(&nodes),
                        secrets::missing_passwords(&s, &ctx.users()),
                    ) {
                        (Ok(_), m) if m.is_empty() => {
                            ctx.set_secrets(s);
                            Check::Ok
                        }
                        (Err(why), _) => Check::Needs(why),
                        (Ok(_), m) => Check::Needs(format!("no password yet for {}", m.join(", "))),
                    },
                    None => Check::Needs("not generated yet".into()),
                },
            )
        },
        move || {
            let (s, _) = secrets::load_or_create(
                &ctx.secrets_path(),
                &ctx.users(),
                &ctx.cluster.later_secret_names(),
                &n2,
            )?;
            ctx.set_secrets(s);
            Ok(())
        },
    )
}

/// Debian's cluster `<major>/main` exists (the package creates it; recreated if dropped).
pub fn pg_cluster(ctx: &Ctx) -> Step<'_> {
    let major = ctx.major.to_string();
    Step::change(
        format!("cluster {}/main exists", ctx.major),
        move || {
            let found = pg::clusters()?
                .into_iter()
                .any(|c| c.version == major && c.name == "main");
            Ok(if found {
                Check::Ok
            } else {
                Check::Needs("pg_lsclusters does not list it".into())
            })
        },
        move || {
            Cmd::new("pg_createcluster")
                .args([
                    ctx.major.to_string().as_str(),
                    "main",
                    "--port",
                    &ctx.port().to_string(),
                ])
                .run()?;
            Ok(())
        },
    )
}

/// A systemd unit is enabled and running.
pub fn service(unit: String) -> Step<'static> {
    let u2 = unit.clone();
    Step::change(
        format!("service {unit} enabled and running"),
        move || {
            let (enabled, active) = (
                system::service_enabled(&unit)?,
                system::service_active(&unit)?,
            );
            Ok(match (enabled, active) {
                (true, true) => Check::Ok,
                (e, a) => Check::Needs(format!("enabled={e} active={a}")),
            })
        },
        move || {
            Cmd::new("systemctl").args(["enable", "--now", &u2]).run()?;
            Ok(())
        },
    )
    // A unit may still be "activating" when systemctl returns (Type=forking, notify timeouts).
    .settles(Duration::from_secs(30))
}

/// The local server is running and accepts connections (bounded wait).
pub fn pg_ready(ctx: &Ctx) -> Step<'_> {
    Step::verify(
        "postgresql accepts connections",
        move || {
            Ok(if pg::local_ready(ctx)? {
                Check::Ok
            } else {
                Check::Needs("pg_isready says no".into())
            })
        },
        move || {
            wait_ready(
                ctx,
                "the local PostgreSQL to accept connections",
                READY_TIMEOUT,
            )
        },
    )
}

/// How long a start or restart of the local server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits (bounded by `timeout`) until the local server accepts connections.
///
/// Errors: the timeout, naming `what` and pg_isready's last answer.
pub fn wait_ready(ctx: &Ctx, what: &str, timeout: Duration) -> Result<()> {
    wait::until(what, timeout, Duration::from_secs(1), || {
        Ok(if pg::local_ready(ctx)? {
            Ok(())
        } else {
            Err("pg_isready says no".into())
        })
    })
}

/// Newest modification time of the files PostgreSQL reads its settings from.
fn newest_conf_mtime(ctx: &Ctx) -> Result<f64> {
    let dir = ctx.path(&ctx.conf_dir());
    let mut files: Vec<PathBuf> = vec![dir.join("postgresql.conf"), dir.join("pg_hba.conf")];
    if let Ok(rd) = std::fs::read_dir(dir.join("conf.d")) {
        files.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    files.push(ctx.path(&ctx.data_dir()).join("postgresql.auto.conf"));
    // A reload also rereads the server's certificate and key: new TLS material (a rotation, or
    // a CA made anew for a node added to the config) is served only after one.
    for f in [crate::tls::CERT_FILE, crate::tls::KEY_FILE] {
        files.push(ctx.path(std::path::Path::new(f)));
    }
    let mut newest = 0f64;
    for f in files {
        if let Ok(m) = std::fs::metadata(&f).and_then(|m| m.modified()) {
            newest = newest.max(
                m.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
    }
    Ok(newest)
}

/// What the server has loaded compared with its files: (conf_load_time epoch, pending_restart names).
fn loaded(ctx: &Ctx) -> Result<(f64, Vec<String>)> {
    let rows = pg::query(&pg::local(ctx, "SELECT extract(epoch FROM pg_conf_load_time()), coalesce((SELECT string_agg(name, ',') FROM pg_settings WHERE pending_restart), '');"))?;
    let row = rows.first().ok_or_else(|| Error::Parse {
        what: "pg_conf_load_time()".into(),
        detail: "no row".into(),
    })?;
    let t = row[0].parse::<f64>().map_err(|e| Error::Parse {
        what: "pg_conf_load_time()".into(),
        detail: e.to_string(),
    })?;
    let pending = row
        .get(1)
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok((t, pending))
}

/// PostgreSQL has loaded its config files: reload when a file is newer than the last load,
/// restart only when a setting that needs it is pending (`pg_settings.pending_restart`).
pub fn pg_settings_loaded(ctx: &Ctx) -> Step<'_> {
    Step::change(
        "postgresql runs with the settings in its files",
        move || {
            let (load_time, pending) = loaded(ctx)?;
            Ok(if newest_conf_mtime(ctx)? > load_time {
                Check::Needs("a config file changed since the last reload".into())
            } else if !pending.is_empty() {
                Check::Needs(format!("restart needed for: {}", pending.join(", ")))
            } else {
                Check::Ok
            })
        },
        move || {
            let newest = newest_conf_mtime(ctx)?;
            if newest > loaded(ctx)?.0 {
                system::systemctl("reload", &ctx.service())?;
                wait::until(
                    "PostgreSQL to reload its config",
                    Duration::from_secs(60),
                    Duration::from_millis(200),
                    || {
                        let t = loaded(ctx)?.0;
                        Ok(if t >= newest {
                            Ok(())
                        } else {
                            Err(format!("pg_conf_load_time {t} < file time {newest}"))
                        })
                    },
                )?;
            }
            if !loaded(ctx)?.1.is_empty() {
                system::systemctl("restart", &ctx.service())?;
                wait_ready(ctx, "PostgreSQL to come back after restart", READY_TIMEOUT)?;
            }
            Ok(())
        },
    )
}

/// Seconds since the epoch (for names of things set aside).
pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Days since 1970-01-01 of a civil (proleptic Gregorian) date, Howard Hinnant's algorithm:
/// the dates pgnode reads (restore targets, certificate expiry) are turned into epoch seconds
/// without a time library.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use std::time::Duration;

    #[test]
    fn days_from_civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 26) * 86_400, 1_795_651_200);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn a_new_certificate_counts_as_a_changed_file_for_the_reload() {
        let mut ctx = crate::golden::ctx(Role::Master, 15);
        let root = std::env::temp_dir().join(format!("pgnode-reload-{}", std::process::id()));
        ctx.root = root.clone();
        let put = |p: PathBuf, secs: u64| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let f = std::fs::File::create(&p).unwrap();
            f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        };
        put(ctx.path(&ctx.conf_dir()).join("postgresql.conf"), 1_000);
        put(
            ctx.path(&ctx.data_dir()).join("postgresql.auto.conf"),
            2_000,
        );
        assert_eq!(newest_conf_mtime(&ctx).unwrap(), 2_000.0);
        put(ctx.path(std::path::Path::new(crate::tls::CERT_FILE)), 3_000);
        assert_eq!(newest_conf_mtime(&ctx).unwrap(), 3_000.0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
