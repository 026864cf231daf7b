//! The reference in `docs/configuration.md` cannot drift from the code: every key the config
//! parser accepts, every key `pgnode config` prints, and every `PGNODE_*` environment variable
//! that the Vagrantfile, the scripts under `provision/` and `.ci/`, or the crates read must be
//! named there (in backticks, as `postgresql.port` or `PGNODE_BOX`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pgnode_core::config::{accepted_keys, Cluster};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> String {
    let path = repo().join("docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fails listing every name of `names` that the reference does not mention as `` `NAME` ``.
fn assert_documented(what: &str, names: impl IntoIterator<Item = String>) {
    let doc = reference();
    let missing: Vec<String> = names
        .into_iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document these {what} (write each as `NAME`, with its \
         type, default and meaning): {missing:?}"
    );
}

/// The dotted key paths of a JSON value (`nodes[].name` for every element of an array).
fn key_paths(v: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                key_paths(child, &p, out);
                out.insert(p);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_config_key_the_parser_accepts_is_documented() {
    let keys = accepted_keys();
    assert!(keys.len() > 20, "suspiciously few keys: {keys:?}");
    assert_documented("config keys", keys);
}

#[test]
fn every_key_pgnode_config_prints_is_documented() {
    // The shipped config plus a slot named on the master: every optional key of the model set.
    let text = std::fs::read_to_string(repo().join("config/cluster.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["nodes"][0]["slot"] = "pg_slot_9".into();
    let cluster = Cluster::parse(&v.to_string(), "cluster.json").expect("valid config");
    let mut keys = BTreeSet::new();
    key_paths(&cluster.normalized(), "", &mut keys);
    assert!(keys.contains("network.subnet"), "{keys:?}");
    assert!(keys.contains("nodes[].slot"), "{keys:?}");
    assert_documented("keys of `pgnode config`", keys);
}

/// Every `PGNODE_[A-Z0-9_]+` in a file (that is not one of the prefixes a comment may mention).
fn env_names(text: &str, out: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("PGNODE_") {
        let start = i + at;
        let mut end = start + "PGNODE_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        if !name.ends_with('_') {
            out.insert(name.to_string());
        }
        i = end;
    }
}

fn scan(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "golden") {
                continue;
            }
            scan(&p, out);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            env_names(&text, out);
        }
    }
}

#[test]
fn every_pgnode_environment_variable_is_documented() {
    let root = repo();
    let mut names = BTreeSet::new();
    env_names(
        &std::fs::read_to_string(root.join("Vagrantfile")).unwrap(),
        &mut names,
    );
    for dir in ["provision", ".ci", "crates"] {
        scan(&root.join(dir), &mut names);
    }
    assert!(names.contains("PGNODE_BOX"), "{names:?}");
    assert!(names.contains("PGNODE_TEST_KILL_AFTER_STEPS"), "{names:?}");
    assert_documented("environment variables", names);
}
