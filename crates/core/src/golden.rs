//! Golden files for rendered config: each role's tests render every file for a fixed cluster
//! and fixed fake secrets and compare byte for byte with `crates/<role>/tests/golden/`.
//! Regenerate after an intended change with `PGNODE_UPDATE_GOLDEN=1 cargo test`, then review
//! the diff like any other change.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Cluster, PgMajor, Role};
use crate::files::FileSpec;
use crate::secrets::{KeyPair, Secrets};
use crate::Ctx;

/// The shipped three-node config.
pub const SHIPPED: &str = include_str!("../../../config/cluster.json");

/// A cluster with two standbys (`slave` and `slave2`, the second with a slot named in the
/// config), for the goldens of larger layouts.
pub const TWO_STANDBYS: &str = include_str!("../tests/two-standbys.json");

/// A context for the first node of `role` in the shipped `config/cluster.json` with
/// deterministic fake secrets.
pub fn ctx(role: Role, major: u16) -> Ctx {
    let cluster = Cluster::parse(SHIPPED, "config/cluster.json").expect("shipped config is valid");
    let name = cluster.with_role(role)[0].name.to_string();
    ctx_for(SHIPPED, &name, major)
}

/// A context for node `name` of the config `text` with deterministic fake secrets.
pub fn ctx_for(text: &str, name: &str, major: u16) -> Ctx {
    let cluster = Cluster::parse(text, "golden config").expect("golden config is valid");
    let node = cluster
        .named(name)
        .expect("node in the golden config")
        .clone();
    let major = PgMajor::new(major).expect("supported major");
    let mut ctx = Ctx::with_major(
        cluster,
        node,
        Path::new("/"),
        Path::new("/vagrant/config/cluster.json"),
        major,
        false,
    );
    ctx.plan_only = true;
    let passwords: BTreeMap<String, String> = ctx
        .users()
        .iter()
        .map(|u| (u.to_string(), format!("FAKE{}", u.replace('_', ""))))
        .collect();
    let key = |n: &str| KeyPair {
        private: format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-{n}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
        public: format!("ssh-ed25519 AAAAFAKE{n} pgnode {n}"),
    };
    ctx.set_secrets(Secrets {
        version: 1,
        passwords,
        archive_ssh_key: key("archive"),
        backup_host_key: key("hostkey"),
        tls: Some(fake_tls(&ctx.cluster)),
    });
    ctx
}

/// Renders a role's files for the shipped config at `major` and checks them against
/// `<crate_dir>/tests/golden/pg<major>`.
pub fn check_role(crate_dir: &str, role: Role, major: u16, files: impl Fn(&Ctx) -> Vec<FileSpec>) {
    let ctx = ctx(role, major);
    check(
        &Path::new(crate_dir).join(format!("tests/golden/pg{major}")),
        &files(&ctx),
    );
}

/// Renders node `name`'s files for the config `text` at `major` and checks them against
/// `<crate_dir>/tests/golden/<layout>-<name>-pg<major>`.
pub fn check_node(
    crate_dir: &str,
    layout: &str,
    text: &str,
    name: &str,
    major: u16,
    files: impl Fn(&Ctx) -> Vec<FileSpec>,
) {
    let ctx = ctx_for(text, name, major);
    check(
        &Path::new(crate_dir).join(format!("tests/golden/{layout}-{name}-pg{major}")),
        &files(&ctx),
    );
}

/// Compares rendered files with the golden directory `dir` (or rewrites it when
/// `PGNODE_UPDATE_GOLDEN` is set). Panics with the first difference, as a test should.
pub fn check(dir: &Path, files: &[FileSpec]) {
    let update = std::env::var_os("PGNODE_UPDATE_GOLDEN").is_some();
    if update {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("create golden dir");
    }
    let mut expected: Vec<String> = Vec::new();
    for f in files {
        let name = f
            .path
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "__");
        let meta = format!("# mode {:04o} owner {}:{}\n", f.mode, f.owner, f.group);
        let body = [meta.as_bytes(), &f.content].concat();
        let path = dir.join(&name);
        expected.push(name.clone());
        if update {
            std::fs::write(&path, &body).expect("write golden file");
            continue;
        }
        let want = std::fs::read(&path).unwrap_or_else(|_| {
            panic!(
                "missing golden file {} (PGNODE_UPDATE_GOLDEN=1 cargo test to create)",
                path.display()
            )
        });
        if want != body {
            panic!(
                "{} differs from its golden file {}:\n{}",
                f.path.display(),
                path.display(),
                crate::diff::line_diff(
                    &String::from_utf8_lossy(&want),
                    &String::from_utf8_lossy(&body)
                )
            );
        }
    }
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .expect("golden dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present,
        expected,
        "golden files in {} do not match the rendered file list",
        dir.display()
    );
}

/// Deterministic fake TLS material for every node of `cluster`.
fn fake_tls(cluster: &Cluster) -> crate::tls::Tls {
    let pem = |kind: &str, what: &str| {
        format!("-----BEGIN {kind}-----\nFAKE-{what}\n-----END {kind}-----\n")
    };
    crate::tls::Tls {
        ca: crate::tls::CertKey {
            cert: pem("CERTIFICATE", "ca"),
            key: pem("PRIVATE KEY", "ca"),
        },
        nodes: cluster
            .nodes()
            .iter()
            .map(|n| {
                let name = n.name.to_string();
                let c = crate::tls::NodeCert {
                    address: n.address,
                    cert: pem("CERTIFICATE", &name),
                    key: pem("PRIVATE KEY", &name),
                };
                (name, c)
            })
            .collect(),
    }
}
