//! Bad input, table-driven, on the built binary: each case must exit 2, print a message naming
//! the problem, and change nothing (every file under the scratch root and the config directory
//! keeps its bytes and mode). A control case with good input proves the setup itself is sound.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const SHIPPED: &str = include_str!("../../../config/cluster.json");

/// What a case changes from the good setup.
enum Bad {
    /// The config file's text.
    Text(&'static str),
    /// A patch of the config's JSON.
    Json(fn(&mut Value)),
    /// The secrets file's bytes (and mode).
    Secrets(fn(&str) -> String, u32),
    /// The role arguments (instead of `--role master`) of a dry run.
    Args(&'static [&'static str]),
    /// The config path does not exist.
    NoConfig,
    /// Run as an unprivileged user, a real converge.
    NotRoot,
    /// Documentation-range addresses no test machine has, a real converge.
    WrongHost,
}

struct Case {
    name: &'static str,
    bad: Bad,
    says: &'static str,
}

fn cases() -> Vec<Case> {
    use Bad::*;
    let c = |name, bad, says| Case { name, bad, says };
    vec![
        c(
            "malformed JSON",
            Text("{\"version\": 1, \"nodes\": ["),
            "(file): not valid JSON",
        ),
        c(
            "not an object",
            Text("[1, 2]"),
            "(file): must be a JSON object",
        ),
        c(
            "port as a string",
            Json(|v| v["postgresql"]["port"] = json!("5432")),
            "postgresql.port: must be a whole number",
        ),
        c(
            "bool as a string",
            Json(|v| v["postgresql"]["hot_standby_feedback"] = json!("yes")),
            "postgresql.hot_standby_feedback: must be true or false",
        ),
        c(
            "nodes not a list",
            Json(|v| v["nodes"] = json!({"master": 1})),
            "nodes: must be a list",
        ),
        c(
            "missing address",
            Json(|v| {
                v["nodes"][1].as_object_mut().unwrap().remove("address");
            }),
            "nodes[1].address: is missing",
        ),
        c(
            "unknown top-level key",
            Json(|v| v["colour"] = json!("blue")),
            "colour: unknown key",
        ),
        c(
            "unknown node key",
            Json(|v| v["nodes"][1]["ip"] = json!("1.2.3.4")),
            "nodes[1].ip: unknown key",
        ),
        c(
            "unknown network key",
            Json(|v| v["network"]["mask"] = json!(24)),
            "network.mask: unknown key",
        ),
        c(
            "unknown postgresql key",
            Json(|v| v["postgresql"]["shared_buffers"] = json!("1GB")),
            "postgresql.shared_buffers: unknown key",
        ),
        c(
            "unknown replication key",
            Json(|v| v["replication"]["sync"] = json!(true)),
            "replication.sync: unknown key",
        ),
        c(
            "unknown barman key",
            Json(|v| v["barman"]["retention"] = json!("x")),
            "barman.retention: unknown key",
        ),
        c(
            "duplicate name",
            Json(|v| v["nodes"][2]["name"] = json!("slave")),
            "nodes[2].name: duplicate node name \"slave\"",
        ),
        c(
            "duplicate address",
            Json(|v| v["nodes"][2]["address"] = json!("192.168.11.102")),
            "nodes[2].address: duplicate address 192.168.11.102",
        ),
        c(
            "address outside the prefix",
            Json(|v| v["nodes"][2]["address"] = json!("192.168.12.103")),
            "not in the same /24 network",
        ),
        c(
            "no master",
            Json(|v| v["nodes"][0]["role"] = json!("slave")),
            "no node has role master",
        ),
        c(
            "two masters",
            Json(|v| v["nodes"][1]["role"] = json!("primary")),
            "2 nodes have role master",
        ),
        c(
            "slot PostgreSQL rejects",
            Json(|v| v["replication"]["slot"] = json!("Pg-Slot")),
            "replication.slot: \"Pg-Slot\" is not a valid replication slot name",
        ),
        c(
            "user named postgres",
            Json(|v| v["replication"]["user"] = json!("postgres")),
            "replication.user: \"postgres\" is not a usable role name",
        ),
        c(
            "retention Barman rejects",
            Json(|v| v["barman"]["retention_policy"] = json!("KEEP 3 BACKUPS")),
            "barman.retention_policy: \"KEEP 3 BACKUPS\" is not",
        ),
        c(
            "retention of zero",
            Json(|v| v["barman"]["retention_policy"] = json!("REDUNDANCY 0")),
            "barman.retention_policy",
        ),
        c(
            "cron minute 61",
            Json(|v| v["barman"]["backup_schedule"] = json!("61 3 * * *")),
            "minute field \"61\": 61 is outside 0-59",
        ),
        c(
            "cron day 0",
            Json(|v| v["barman"]["backup_schedule"] = json!("0 3 0 * *")),
            "day of month field \"0\": 0 is outside 1-31",
        ),
        c(
            "cron step 0",
            Json(|v| v["barman"]["backup_schedule"] = json!("*/0 3 * * *")),
            "step /0 must be a number",
        ),
        c(
            "cron six fields",
            Json(|v| v["barman"]["backup_schedule"] = json!("0 3 * * * rm")),
            "has 6 fields",
        ),
        c(
            "port 0",
            Json(|v| v["postgresql"]["port"] = json!(0)),
            "postgresql.port: 0 is not a port",
        ),
        c(
            "port 70000",
            Json(|v| v["postgresql"]["port"] = json!(70000)),
            "postgresql.port: 70000 is not a port",
        ),
        c(
            "major 9",
            Json(|v| v["postgresql"]["major"] = json!(9)),
            "postgresql.major: 9 is not a supported PostgreSQL major",
        ),
        c(
            "major 18",
            Json(|v| v["postgresql"]["major"] = json!(18)),
            "postgresql.major: 18 is not a supported PostgreSQL major",
        ),
        c(
            "config version 2",
            Json(|v| v["version"] = json!(2)),
            "version: version 2 is for a newer pgnode",
        ),
        c(
            "binary older than min_pgnode",
            Json(|v| v["min_pgnode"] = json!("99.0.0")),
            "min_pgnode: this config needs pgnode 99.0.0 or newer",
        ),
        c(
            "secrets corrupt",
            Secrets(|_| "{\"version\": 1, garbage".into(), 0o600),
            "not a pgnode secrets file",
        ),
        c(
            "secrets truncated",
            Secrets(|s| s[..s.len() / 2].to_string(), 0o600),
            "not a pgnode secrets file: EOF",
        ),
        c(
            "secrets missing a user",
            Secrets(|s| s.replace("\"barman\":", "\"someone\":"), 0o600),
            "no password for role \"barman\"",
        ),
        c(
            "secrets readable by others",
            Secrets(|s| s.to_string(), 0o644),
            "mode is 0644; it holds passwords and keys and must be 0600",
        ),
        c(
            "secrets with a damaged key",
            Secrets(
                |s| s.replacen("-----BEGIN OPENSSH", "-----BEGIN BROKEN", 1),
                0o600,
            ),
            "archive_ssh_key.private is not an OpenSSH private key",
        ),
        c(
            "wrong role for this host",
            WrongHost,
            "does not have address 198.51.100.102 of node slave",
        ),
        c("not root", NotRoot, "must run as root"),
        c("config path that does not exist", NoConfig, "cannot read"),
        c(
            "unknown role",
            Args(&["--role", "witness"]),
            "unknown role \"witness\"",
        ),
        c(
            "reclone on the master",
            Args(&["--role", "master", "--reclone"]),
            "--reclone is for the slave role only",
        ),
    ]
}

fn good_secrets() -> String {
    let key = |n: &str| {
        json!({"private": format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{n}\n-----END OPENSSH PRIVATE KEY-----\n"),
               "public": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n} test")})
    };
    serde_json::to_string_pretty(&json!({
        "version": 1,
        "passwords": {"barman": "A".repeat(32), "barman_streaming_user": "B".repeat(32), "streaming_user": "C".repeat(32)},
        "archive_ssh_key": key("one"),
        "backup_host_key": key("two"),
    }))
    .unwrap()
}

/// A scratch root with what a dry run reads, and a config directory with a good config and
/// good secrets; then the case's damage.
fn setup(case: &Case, dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    let cfgdir = dir.join("config");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\npostgres:x:0:0::/var/lib/postgresql:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:0:\n").unwrap();
    let cfg = cfgdir.join("cluster.json");
    let mut config = SHIPPED.to_string();
    let (mut secrets, mut mode) = (good_secrets(), 0o600);
    match &case.bad {
        Bad::Text(t) => config = t.to_string(),
        Bad::Json(patch) => {
            let mut v: Value = serde_json::from_str(SHIPPED).unwrap();
            patch(&mut v);
            config = v.to_string();
        }
        Bad::Secrets(f, m) => (secrets, mode) = (f(&secrets), *m),
        Bad::WrongHost => config = SHIPPED.replace("192.168.11.", "198.51.100."),
        _ => {}
    }
    std::fs::write(&cfg, config).unwrap();
    let sp = cfgdir.join("secrets.json");
    std::fs::write(&sp, secrets).unwrap();
    std::fs::set_permissions(&sp, std::fs::Permissions::from_mode(mode)).unwrap();
    // Open up the scratch directories for the unprivileged case.
    for d in [dir, &root, &cfgdir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (root, cfg)
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let mode = e.metadata().unwrap().permissions().mode();
        if p.is_dir() {
            out.push((p.clone(), mode, Vec::new()));
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), mode, std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn run(case: &Case, dir: &Path, root: &Path, cfg: &Path) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_pgnode");
    let cfg_s = cfg.to_str().unwrap();
    let root_s = root.to_str().unwrap();
    let missing = dir.join("nowhere/cluster.json");
    let args: Vec<&str> = match &case.bad {
        Bad::NotRoot => vec!["--role", "master", "--config", cfg_s],
        Bad::WrongHost => vec!["--role", "slave", "--root", root_s, "--config", cfg_s],
        Bad::NoConfig => vec![
            "--role",
            "master",
            "--dry-run",
            "--config",
            missing.to_str().unwrap(),
        ],
        Bad::Args(role) => {
            let mut a = role.to_vec();
            a.extend(["--dry-run", "--root", root_s, "--config", cfg_s]);
            a
        }
        _ => vec![
            "--role",
            "master",
            "--dry-run",
            "--root",
            root_s,
            "--config",
            cfg_s,
        ],
    };
    let mut cmd = if matches!(case.bad, Bad::NotRoot) && is_root() {
        // As root (CI runs the tests as root), drop to nobody: a copy of the binary it can run.
        let copy = dir.join("pgnode");
        std::fs::copy(bin, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(copy);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).output().expect("run pgnode")
}

#[test]
fn every_bad_input_exits_2_names_the_problem_and_changes_nothing() {
    let base = std::env::temp_dir().join(format!("pgnode-bad-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let all = cases();
    assert!(all.len() >= 20);
    let mut failures = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let dir = base.join(i.to_string());
        let (root, cfg) = setup(case, &dir);
        let before = snapshot(&dir);
        let o = run(case, &dir, &root, &cfg);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        // The unprivileged case adds its binary copy: compare without it.
        let after: Vec<_> = snapshot(&dir)
            .into_iter()
            .filter(|(p, _, _)| p != &dir.join("pgnode"))
            .collect();
        if o.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, want 2; stderr: {err}",
                case.name,
                o.status.code()
            ));
        } else if !err.contains(case.says) {
            failures.push(format!(
                "{}: stderr lacks {:?}: {err}",
                case.name, case.says
            ));
        } else if after != before {
            failures.push(format!("{}: files changed", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_good_setup_of_the_table_is_accepted() {
    // Without this control, a case could pass because the setup itself is broken.
    let base =
        std::env::temp_dir().join(format!("pgnode-bad-input-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let case = Case {
        name: "control",
        bad: Bad::Args(&["--role", "master"]),
        says: "",
    };
    let (root, cfg) = setup(&case, &base);
    let o = run(&case, &base, &root, &cfg);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&base).unwrap();
}
