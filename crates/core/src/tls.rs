//! The cluster's TLS material: a private CA and one certificate per node (its name and address
//! as subject alternative names), generated with the `openssl` CLI and kept in the secrets.
//!
//! Every connection between nodes verifies the server against this CA (`sslmode=verify-full`):
//! Debian's snakeoil certificate gave encryption without authentication, so an active attacker
//! could read or downgrade the traffic. Private keys are only ever written by openssl itself
//! into a private (0700) temporary directory and read back: never an argument, never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::Cmd;

/// Where every node keeps the CA certificate (readable by all: it is public).
pub const CA_FILE: &str = "/etc/ssl/pgnode/ca.crt";
/// The server certificate of a PostgreSQL node.
pub const CERT_FILE: &str = "/etc/ssl/pgnode/server.crt";
/// Its private key (owned by postgres, 0600, as PostgreSQL demands).
pub const KEY_FILE: &str = "/etc/ssl/pgnode/server.key";

/// How long certificates are valid; `pgnode secrets --rotate-tls` replaces them sooner.
const CA_DAYS: &str = "3650";
const NODE_DAYS: &str = "825";

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertKey {
    pub cert: String,
    pub key: String,
}

/// One node's certificate, with the address it was issued for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCert {
    pub address: Ipv4Addr,
    pub cert: String,
    pub key: String,
}

/// The CA and the certificate of each node, by node name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca: CertKey,
    pub nodes: BTreeMap<String, NodeCert>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls(<CA and {} node keys redacted>)", self.nodes.len())
    }
}

impl Tls {
    /// Whether there is a certificate for every `(name, address)`; if not, which is missing.
    pub fn missing(&self, nodes: &[(String, Ipv4Addr)]) -> Option<String> {
        nodes
            .iter()
            .find_map(|(name, addr)| match self.nodes.get(name) {
                None => Some(format!("no TLS certificate for node {name}")),
                Some(c) if c.address != *addr => Some(format!(
                    "the TLS certificate of node {name} is for {}, not {addr}",
                    c.address
                )),
                Some(_) => None,
            })
    }

    /// Shape checks (PEM blocks), so a damaged file is refused before anything is written.
    pub fn plausible(&self) -> std::result::Result<(), String> {
        let pem = |what: &str, text: &str, kind: &str| {
            let ok = text.contains(&format!("-----BEGIN {kind}-----"))
                && text.contains(&format!("-----END {kind}-----"));
            if ok {
                Ok(())
            } else {
                Err(format!("{what} is not a PEM {kind}"))
            }
        };
        pem("tls.ca.cert", &self.ca.cert, "CERTIFICATE")?;
        pem("tls.ca.key", &self.ca.key, "PRIVATE KEY")?;
        for (n, c) in &self.nodes {
            pem(&format!("tls.nodes.{n}.cert"), &c.cert, "CERTIFICATE")?;
            pem(&format!("tls.nodes.{n}.key"), &c.key, "PRIVATE KEY")?;
        }
        Ok(())
    }
}

/// A fresh CA and a certificate for each `(name, address)`, signed by it.
///
/// Errors: openssl missing or failing (with its stderr), or the temporary directory.
pub fn generate(nodes: &[(String, Ipv4Addr)]) -> Result<Tls> {
    let dir = std::env::temp_dir().join(format!("pgnode-tls-{}", crate::files::unique_suffix()));
    let result = (|| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| Error::Write {
                path: dir.clone(),
                source,
            })?;
        let ca = make_ca(&dir)?;
        let mut certs = BTreeMap::new();
        for (name, addr) in nodes {
            certs.insert(name.clone(), make_node(&dir, name, *addr)?);
        }
        Ok(Tls { ca, nodes: certs })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `tls` with a certificate for each `(name, address)` it lacks (or holds for another address),
/// signed by its own CA: adding a node to the config must not replace the CA every running
/// node trusts (that would break verify-full connections until every node reran its role).
///
/// Errors: as [`generate`].
pub fn extend(tls: &Tls, nodes: &[(String, Ipv4Addr)]) -> Result<Tls> {
    let dir = std::env::temp_dir().join(format!("pgnode-tls-{}", crate::files::unique_suffix()));
    let result = (|| {
        let werr = |path: PathBuf| move |source| Error::Write { path, source };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(werr(dir.clone()))?;
        for (file, text) in [("ca.crt", &tls.ca.cert), ("ca.key", &tls.ca.key)] {
            let p = dir.join(file);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                .map_err(werr(p.clone()))?;
        }
        let mut out = tls.clone();
        for (name, addr) in nodes {
            if !matches!(out.nodes.get(name), Some(c) if c.address == *addr) {
                out.nodes
                    .insert(name.clone(), make_node(&dir, name, *addr)?);
            }
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// When the certificate in `file` expires, in seconds since the epoch (`openssl x509 -enddate`).
///
/// Errors: openssl missing or failing (naming the command and its stderr), or an end date it
/// does not print in its usual form ([`Error::Parse`] naming the file).
pub fn expiry(file: &Path) -> Result<i64> {
    let out = openssl()
        .env("LC_ALL", "C")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(file.to_string_lossy())
        .run()?;
    parse_enddate(&out.stdout).ok_or_else(|| Error::Parse {
        what: format!("openssl x509 -enddate of {}", file.display()),
        detail: out.stdout.trim().to_string(),
    })
}

/// Parses `notAfter=Nov 26 10:49:46 2028 GMT` (openssl pads a one-digit day with a space).
pub fn parse_enddate(out: &str) -> Option<i64> {
    let text = out.trim().strip_prefix("notAfter=")?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let [mon, day, clock, year, "GMT"] = f.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    let d: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = clock
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, sec] = hms.as_slice() else {
        return None;
    };
    if !(0..24).contains(h) || !(0..60).contains(mi) || !(0..61).contains(sec) {
        return None;
    }
    Some(crate::common::days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

fn openssl() -> Cmd {
    Cmd::new("openssl")
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|source| Error::Read {
        path: p.to_path_buf(),
        source,
    })
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// ECDSA P-256 keys: small, fast, and accepted by every libpq and PostgreSQL pgnode supports.
const NEWKEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn make_ca(dir: &Path) -> Result<CertKey> {
    openssl()
        .args(["req", "-x509", "-new", "-noenc", "-days", CA_DAYS])
        .args(NEWKEY)
        .args([
            "-keyout",
            &path(dir, "ca.key"),
            "-out",
            &path(dir, "ca.crt"),
        ])
        .args(["-subj", "/CN=pgnode cluster CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .run()?;
    Ok(CertKey {
        cert: read(&dir.join("ca.crt"))?,
        key: read(&dir.join("ca.key"))?,
    })
}

fn make_node(dir: &Path, name: &str, addr: Ipv4Addr) -> Result<NodeCert> {
    let (key, csr, crt, ext): (PathBuf, PathBuf, PathBuf, PathBuf) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.ext")),
    );
    openssl()
        .args(["req", "-new", "-noenc"])
        .args(NEWKEY)
        .args([
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &csr.to_string_lossy(),
        ])
        .args(["-subj", &format!("/CN={name}")])
        .run()?;
    // verify-full matches the host of the conninfo (an address) against the IP SAN; the DNS
    // name serves clients that connect by name.
    let extensions = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:{addr},DNS:{name}\n"
    );
    std::fs::write(&ext, extensions).map_err(|source| Error::Write {
        path: ext.clone(),
        source,
    })?;
    openssl()
        .args([
            "x509",
            "-req",
            "-days",
            NODE_DAYS,
            "-in",
            &csr.to_string_lossy(),
        ])
        .args(["-CA", &path(dir, "ca.crt"), "-CAkey", &path(dir, "ca.key")])
        .args(["-CAcreateserial", "-CAserial", &path(dir, "ca.srl")])
        .args([
            "-extfile",
            &ext.to_string_lossy(),
            "-out",
            &crt.to_string_lossy(),
        ])
        .run()?;
    Ok(NodeCert {
        address: addr,
        cert: read(&crt)?,
        key: read(&key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_dates_as_openssl_prints_them() {
        assert_eq!(
            parse_enddate("notAfter=Nov 26 10:49:46 2026 GMT\n"),
            Some(1_795_690_186)
        );
        assert_eq!(parse_enddate("notAfter=Jan  1 00:00:00 1970 GMT"), Some(0));
        assert_eq!(
            parse_enddate("notAfter=Feb 29 23:59:59 2028 GMT"),
            Some(1_835_481_599)
        );
        for bad in [
            "",
            "notBefore=Nov 26 10:49:46 2026 GMT",
            "notAfter=Nov 26 10:49:46 2026",
            "notAfter=Foo 26 10:49:46 2026 GMT",
            "notAfter=Nov 32 10:49:46 2026 GMT",
            "notAfter=Nov 26 24:00:00 2026 GMT",
            "notAfter=Nov 26 10:49 2026 GMT",
        ] {
            assert_eq!(parse_enddate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generates_a_ca_and_node_certificates_that_verify() {
        if which::which("openssl").is_err() {
            eprintln!("skipping: openssl not installed");
            return;
        }
        let nodes = vec![
            ("master".to_string(), Ipv4Addr::new(192, 168, 11, 101)),
            ("slave".to_string(), Ipv4Addr::new(192, 168, 11, 102)),
        ];
        let tls = generate(&nodes).unwrap();
        assert!(tls.missing(&nodes).is_none());
        assert!(tls.plausible().is_ok());
        let moved = [("slave".to_string(), Ipv4Addr::new(192, 168, 11, 99))];
        assert!(tls
            .missing(&moved)
            .unwrap()
            .contains("is for 192.168.11.102"));
        assert!(!format!("{tls:?}").contains("PRIVATE"));
        let d = std::env::temp_dir().join(format!("pgnode-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.crt"), &tls.ca.cert).unwrap();
        std::fs::write(d.join("m.crt"), &tls.nodes["master"].cert).unwrap();
        let left = expiry(&d.join("m.crt")).unwrap() - crate::common::now_epoch() as i64;
        assert!((824 * 86_400..=825 * 86_400).contains(&left), "{left}");
        let out = Cmd::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(path(&d, "ca.crt"))
            .args(["-verify_ip", "192.168.11.101"])
            .arg(path(&d, "m.crt"))
            .probe()
            .unwrap();
        assert!(out.success(), "{}{}", out.stdout, out.stderr);
        let wrong = Cmd::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(path(&d, "ca.crt"))
            .args(["-verify_ip", "192.168.11.102"])
            .arg(path(&d, "m.crt"))
            .probe()
            .unwrap();
        assert!(
            !wrong.success(),
            "the master's certificate must not pass for the slave's address"
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
