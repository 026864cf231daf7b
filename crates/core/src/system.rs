//! Host facts and probes: accounts (read from `etc/passwd` under the root, so a static binary
//! needs no NSS), the distribution, installed packages, services. Probes return facts; only
//! an unexpected failure is an error.

use std::path::Path;

use crate::config::PgMajor;
use crate::error::{Error, Result};
use crate::exec::Cmd;

fn lookup(root: &Path, file: &str, name: &str) -> Result<Option<Vec<String>>> {
    let path = root.join("etc").join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
    Ok(text
        .lines()
        .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
        .find(|f| f.first().map(String::as_str) == Some(name)))
}

/// The uid of `owner` and the gid of `group`.
///
/// Errors: [`Error::NoSuchAccount`] naming the missing user or group.
pub fn ids(root: &Path, owner: &str, group: &str) -> Result<(u32, u32)> {
    let missing = |kind, name: &str, file: &str| Error::NoSuchAccount {
        kind,
        name: name.to_string(),
        path: root.join("etc").join(file),
    };
    let uid = lookup(root, "passwd", owner)?
        .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
        .ok_or_else(|| missing("user", owner, "passwd"))?;
    let gid = lookup(root, "group", group)?
        .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
        .ok_or_else(|| missing("group", group, "group"))?;
    Ok((uid, gid))
}

/// `ID` and `VERSION_ID` from `etc/os-release`.
pub fn os_release(root: &Path) -> Result<(String, String)> {
    let path = root.join("etc/os-release");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
    Ok(parse_os_release(&text))
}

fn parse_os_release(text: &str) -> (String, String) {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("ID"), get("VERSION_ID"))
}

/// The PostgreSQL major a distribution ships, for `major: "auto"`.
///
/// Errors: [`Error::Refused`] for a distribution pgnode does not know, asking for an explicit major.
pub fn default_major(id: &str, version: &str) -> Result<PgMajor> {
    let m = match (id, version) {
        ("debian", "11") => 13,
        ("debian", "12") => 15,
        ("debian", "13") => 17,
        ("ubuntu", "22.04") => 14,
        ("ubuntu", "24.04") => 16,
        _ => {
            return Err(Error::Refused(format!(
            "cannot pick a PostgreSQL major for {id} {version}: set postgresql.major in the config"
        )))
        }
    };
    Ok(PgMajor::new(m).expect("table holds supported majors"))
}

/// Which of `packages` are not fully installed (`dpkg-query` says "install ok installed").
pub fn missing_packages(packages: &[String]) -> Result<Vec<String>> {
    let out = Cmd::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
        .args(packages.iter().cloned())
        .probe()?;
    Ok(parse_missing(packages, &out.stdout))
}

fn parse_missing(packages: &[String], dpkg_out: &str) -> Vec<String> {
    let installed: Vec<&str> = dpkg_out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            (w.next()? == "ii").then_some(name)
        })
        .collect();
    packages
        .iter()
        .filter(|p| !installed.contains(&p.as_str()))
        .cloned()
        .collect()
}

/// Installs packages with apt-get, non-interactively and without recommends. When the package
/// lists are missing or stale (the install fails), refreshes them once and retries.
///
/// Errors: the failing apt-get command with its stderr tail.
pub fn apt_install(packages: &[String]) -> Result<()> {
    let install = Cmd::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confold",
            "install",
        ])
        .args(packages.iter().cloned());
    if install.probe()?.success() {
        return Ok(());
    }
    Cmd::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "update"])
        .run()?;
    install.run()?;
    Ok(())
}

/// Whether a systemd unit is active (`systemctl is-active` exits non-zero for "no").
pub fn service_active(unit: &str) -> Result<bool> {
    Ok(Cmd::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .probe()?
        .success())
}

/// Whether a systemd unit is enabled.
pub fn service_enabled(unit: &str) -> Result<bool> {
    Ok(Cmd::new("systemctl")
        .args(["is-enabled", "--quiet", unit])
        .probe()?
        .success())
}

/// `systemctl ACTION UNIT` (start, restart, reload, enable ...).
pub fn systemctl(action: &str, unit: &str) -> Result<()> {
    Cmd::new("systemctl").args([action, unit]).run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_majors() {
        let (id, v) = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!((id.as_str(), v.as_str()), ("debian", "12"));
        assert_eq!(default_major("debian", "12").unwrap().get(), 15);
        assert_eq!(default_major("debian", "13").unwrap().get(), 17);
        assert!(default_major("fedora", "40").is_err());
    }

    #[test]
    fn dpkg_query_parsing() {
        let pk = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let out = "postgresql-15 ii \nbarman rc \n";
        assert_eq!(
            parse_missing(&pk(&["postgresql-15", "barman", "cron"]), out),
            pk(&["barman", "cron"])
        );
    }

    #[test]
    fn ids_come_from_the_root() {
        let root = std::env::temp_dir().join(format!("pgnode-ids-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:110:\n").unwrap();
        assert_eq!(ids(&root, "postgres", "postgres").unwrap(), (105, 110));
        let e = ids(&root, "barman", "barman").unwrap_err();
        assert!(
            e.to_string().contains("user \"barman\" does not exist"),
            "{e}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
