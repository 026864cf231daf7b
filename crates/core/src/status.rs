//! `pgnode status`: what this node is and whether it is healthy, as a table or JSON. Role crates
//! gather the facts; this module only holds and prints them.

use serde::Serialize;

/// One observed fact and whether it is healthy.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub check: String,
    pub value: String,
    pub ok: bool,
}

/// The status of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: String,
    pub address: String,
    pub healthy: bool,
    pub items: Vec<Item>,
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
        }
    }

    /// Records a fact; an unhealthy fact makes the node unhealthy.
    pub fn add(&mut self, check: impl Into<String>, value: impl Into<String>, ok: bool) {
        self.healthy &= ok;
        self.items.push(Item {
            check: check.into(),
            value: value.into(),
            ok,
        });
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
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
