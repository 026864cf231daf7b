//! `pgnode status`: what this node is and whether it is healthy, as a table or JSON. Role crates
//! gather the facts; this module only holds and prints them. Beside each fact a gatherer may
//! attach typed samples, which [`crate::metrics`] writes for Prometheus: the facts are gathered
//! once, whichever form is printed.

use std::time::SystemTime;

use serde::Serialize;

use crate::metrics::Sample;

/// One observed fact and whether it is healthy.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub check: String,
    pub value: String,
    pub ok: bool,
    /// Raw numbers behind `value` (bytes, seconds, timeline) for machines; `value` is for people.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub raw: serde_json::Value,
}

/// The status of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: String,
    pub address: String,
    pub healthy: bool,
    pub items: Vec<Item>,
    /// When gathering began (the metrics' timestamp and collect duration).
    #[serde(skip)]
    pub started: SystemTime,
    /// Samples for `--prometheus`; never part of the table or the JSON.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// How each client of the config connects (from the config: the same on every node).
    pub connect: Vec<crate::config::Connect>,
}

impl NodeStatus {
    /// An empty, healthy status for a node.
    pub fn new(node: &str, role: &str, address: &str) -> Self {
        NodeStatus {
            node: node.into(),
            role: role.into(),
            address: address.into(),
            healthy: true,
            items: Vec::new(),
            started: SystemTime::now(),
            samples: Vec::new(),
            connect: Vec::new(),
        }
    }

    /// Attaches a sample of the metric `name` (one of [`crate::metrics::FAMILIES`]).
    pub fn metric(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample::new(name, labels, value));
    }

    /// Attaches a 0/1 sample.
    pub fn flag(&mut self, name: &'static str, labels: &[(&'static str, &str)], on: bool) {
        self.metric(name, labels, crate::metrics::bool_value(on));
    }

    /// Records a fact; an unhealthy fact makes the node unhealthy.
    pub fn add(&mut self, check: impl Into<String>, value: impl Into<String>, ok: bool) {
        self.healthy &= ok;
        self.items.push(Item {
            check: check.into(),
            value: value.into(),
            ok,
            raw: serde_json::Value::Null,
        });
    }

    /// Records the outcome of a probe with its raw numbers.
    pub fn add_raw(&mut self, check: &str, r: crate::Result<(String, bool, serde_json::Value)>) {
        match r {
            Ok((v, ok, raw)) => {
                self.add(check, v, ok);
                if let Some(last) = self.items.last_mut() {
                    last.raw = raw;
                }
            }
            Err(e) => self.add_result(check, Err(e)),
        }
    }

    /// Records the outcome of a probe that may have failed outright.
    pub fn add_result(&mut self, check: &str, r: crate::Result<(String, bool)>) {
        match r {
            Ok((v, ok)) => self.add(check, v, ok),
            Err(e) => self.add(
                check,
                format!("error: {}", crate::step::chain(&e).replace('\n', " ")),
                false,
            ),
        }
    }

    /// A human table.
    pub fn table(&self) -> String {
        let w = self.items.iter().map(|i| i.check.len()).max().unwrap_or(0);
        let mut s = format!(
            "{} ({}, {}): {}\n",
            self.node,
            self.role,
            self.address,
            if self.healthy { "HEALTHY" } else { "UNHEALTHY" }
        );
        for i in &self.items {
            let mark = if i.ok { "OK  " } else { "FAIL" };
            let mut lines = i.value.lines();
            s.push_str(&format!(
                "  {mark}  {:w$}  {}\n",
                i.check,
                lines.next().unwrap_or("")
            ));
            for l in lines {
                s.push_str(&format!("        {:w$}  {l}\n", ""));
            }
        }
        for c in &self.connect {
            s.push_str(&format!(
                "  connect as {} to {} (libpq; follows the primary):\n    read-write  {}\n    read-only   {}\n",
                c.user, c.database, c.read_write, c.read_only
            ));
        }
        s
    }
}

/// A byte count for people: `4.0 GiB`, `512 B` (the JSON output keeps raw numbers in values
/// that are numbers; tables use this).
pub fn human_bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.unsigned_abs() as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    let sign = if n < 0 { "-" } else { "" };
    if i == 0 {
        format!("{sign}{} B", n.unsigned_abs())
    } else {
        format!("{sign}{v:.1} {}", units[i])
    }
}

/// [`human_bytes`] of a number psql printed, or the text itself when it is not a number.
pub fn human(s: &str) -> String {
    s.parse::<i64>()
        .map(human_bytes)
        .unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4303661016), "4.0 GiB");
        assert_eq!(human_bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(human("unlimited"), "unlimited");
        assert_eq!(human("2048"), "2.0 KiB");
    }

    #[test]
    fn one_bad_item_makes_the_node_unhealthy() {
        let mut s = NodeStatus::new("master", "master", "10.0.0.1");
        s.add("postgresql", "online", true);
        assert!(s.healthy);
        s.add("slot pg_slot_1", "inactive\nwal_status=lost", false);
        assert!(!s.healthy);
        let t = s.table();
        assert!(
            t.starts_with("master (master, 10.0.0.1): UNHEALTHY\n"),
            "{t}"
        );
        assert!(t.contains("  FAIL  slot pg_slot_1  inactive\n"), "{t}");
        assert!(t.contains("wal_status=lost"));
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["items"][1]["ok"], false);
    }
}
