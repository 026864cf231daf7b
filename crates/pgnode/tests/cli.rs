//! CLI tests on the built binary: help, exit codes, config errors naming fields, secrets,
//! and a dry-run plan into a scratch root that must change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgnode"))
        .args(args)
        .output()
        .expect("run pgnode")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgnode-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shipped_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster.json"))
        .unwrap()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn help_names_roles_and_commands() {
    let o = pgnode(&["--help"]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for want in [
        "--role",
        "--config",
        "--dry-run",
        "status",
        "secrets",
        "/vagrant/config/cluster.json",
    ] {
        assert!(out.contains(want), "--help lacks {want}:\n{out}");
    }
}

#[test]
fn invalid_config_exits_2_and_names_every_field() {
    let d = scratch("bad");
    let cfg = d.join("cluster.json");
    let bad = shipped_config()
        .replace("\"pg_slot_1\"", "\"Pg-Slot\"")
        .replace("192.168.11.103", "192.168.11.102")
        .replace("\"version\": 1", "\"version\": 1, \"colour\": 2");
    std::fs::write(&cfg, bad).unwrap();
    let o = pgnode(&["--role", "slave", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    assert!(err.contains("colour: unknown key"), "{err}");
    let fixed = shipped_config()
        .replace("\"pg_slot_1\"", "\"Pg-Slot\"")
        .replace("192.168.11.103", "192.168.11.102");
    std::fs::write(&cfg, fixed).unwrap();
    let o = pgnode(&["--role", "slave", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    assert!(
        err.contains("replication.slot: \"Pg-Slot\" is not a valid replication slot name"),
        "{err}"
    );
    assert!(
        err.contains("nodes[2].address: duplicate address 192.168.11.102"),
        "{err}"
    );
    assert_eq!(
        all_files(&d),
        vec![cfg],
        "an invalid config must touch nothing"
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn bad_usage_exits_2() {
    let o = pgnode(&["--role", "witness", "--config", "/nonexistent.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown role \"witness\""));
    let o = pgnode(&["--config", "/nonexistent/cluster.json", "--role", "master"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("cannot read /nonexistent/cluster.json"),
        "{}",
        text(&o).1
    );
}

#[test]
fn role_refuses_to_run_on_a_machine_without_its_address() {
    let d = scratch("wrong-host");
    let cfg = d.join("cluster.json");
    // Documentation-range addresses: never assigned to a test machine.
    std::fs::write(&cfg, shipped_config().replace("192.168.11.", "198.51.100.")).unwrap();
    let o = pgnode(&["--role", "slave", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("does not have address 198.51.100.102 of node slave"),
        "{}",
        text(&o).1
    );
    assert_eq!(all_files(&d), vec![cfg]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn secrets_are_created_once_0600_and_never_printed() {
    if which_ssh_keygen().is_none() {
        eprintln!("skipping: ssh-keygen not installed");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("secrets");
    let cfg = d.join("cluster.json");
    std::fs::write(&cfg, shipped_config()).unwrap();
    let o = pgnode(&["secrets", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("(created"));
    let path = d.join("secrets.json");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("\"tls\"") && first.contains("BEGIN CERTIFICATE"));
    assert!(!text(&o).0.contains("PRIVATE KEY"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = pgnode(&["secrets", "--config", cfg.to_str().unwrap()]);
    assert!(text(&o).0.contains("(already present)"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    for (_, pw) in v["passwords"].as_object().unwrap() {
        let (out, err) = text(&o);
        assert!(!out.contains(pw.as_str().unwrap()) && !err.contains(pw.as_str().unwrap()));
    }
    std::fs::remove_dir_all(d).unwrap();
}

fn which_ssh_keygen() -> Option<()> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .any(|p| Path::new(p).join("ssh-keygen").exists())
        .then_some(())
}

#[test]
fn dry_run_plans_into_a_scratch_root_and_changes_nothing() {
    let root = scratch("plan");
    std::fs::create_dir_all(root.join("etc")).unwrap();
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
    let cfgdir = scratch("plan-config");
    let cfg = cfgdir.join("cluster.json");
    std::fs::write(&cfg, shipped_config()).unwrap();
    let before = all_files(&root);
    let o = pgnode(&[
        "--role",
        "master",
        "--dry-run",
        "--root",
        root.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("would change  file /etc/postgresql/15/main/conf.d/pgnode.conf: missing"),
        "{out}"
    );
    assert!(
        out.contains("+ wal_level = replica"),
        "diff missing:\n{out}"
    );
    assert!(
        out.contains("would change  file /var/lib/postgresql/.ssh/id_ed25519: missing"),
        "{out}"
    );
    assert!(out.contains("(secret content not shown)"), "{out}");
    assert!(
        !out.contains("PRIVATE KEY"),
        "a dry run must not print keys:\n{out}"
    );
    assert!(
        out.lines().last().unwrap().contains("dry_run=true"),
        "{out}"
    );
    assert_eq!(all_files(&root), before, "dry run wrote into the root");
    assert_eq!(all_files(&cfgdir), vec![cfg], "dry run created secrets");
    std::fs::remove_dir_all(root).unwrap();
    std::fs::remove_dir_all(cfgdir).unwrap();
}

#[test]
fn config_prints_the_normalized_config_and_refuses_an_invalid_one() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster.json");
    let o = pgnode(&["config", "--config", shipped.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["nodes"][0]["name"], "master");
    assert_eq!(v["nodes"][2]["role"], "backup");
    assert_eq!(v["network"]["subnet"], "192.168.11.0/24");
    let d = scratch("config-bad");
    let cfg = d.join("cluster.json");
    std::fs::write(&cfg, shipped_config().replace("5432", "70000")).unwrap();
    let o = pgnode(&["config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("postgresql.port"), "{}", text(&o).1);
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout for an invalid config"
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn status_help_lists_prometheus() {
    let o = pgnode(&["status", "--help"]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for want in ["--json", "--prometheus <FILE>", "node-exporter/pgnode.prom"] {
        assert!(out.contains(want), "status --help lacks {want}:\n{out}");
    }
    let o = pgnode(&["status", "--json", "--prometheus", "-"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}

/// Whatever this machine's PostgreSQL says (most likely nothing: the node is unhealthy), the
/// metrics file is written and the exit code says only that.
#[test]
fn status_prometheus_writes_the_file_and_exits_0_when_written() {
    let d = scratch("prometheus");
    let cfg = d.join("cluster.json");
    let fixed = shipped_config().replace("\"major\": \"auto\"", "\"major\": 15");
    std::fs::write(&cfg, fixed).unwrap();
    let file = d.join("pgnode.prom");
    let args = [
        "status",
        "--config",
        cfg.to_str().unwrap(),
        "--node",
        "master",
    ];
    let o = pgnode(&[&args[..], &["--prometheus", file.to_str().unwrap()]].concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.is_empty(), "nothing on stdout when written: {out}");
    let written = std::fs::read_to_string(&file).unwrap();
    for want in [
        "# TYPE pgnode_status_healthy gauge\npgnode_status_healthy ",
        "pgnode_node_info{node=\"master\",role=\"master\",address=\"192.168.11.101\"} 1\n",
        "pgnode_postgresql_major 15\n",
        "pgnode_status_check_ok{check=\"postgresql\"} ",
    ] {
        assert!(written.contains(want), "{want:?} not in:\n{written}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let missing = d.join("no-such-dir/pgnode.prom");
    let o = pgnode(&[&args[..], &["--prometheus", missing.to_str().unwrap()]].concat());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-dir/pgnode.prom"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}
