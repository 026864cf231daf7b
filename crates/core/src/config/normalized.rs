//! The validated config as JSON for the tools around pgnode (`pgnode config`): the lab, the
//! Ansible wrapper and the Vagrantfile read this instead of parsing `cluster.json` themselves,
//! so defaults, aliases and validation live in one place.

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::{Cluster, MajorSpec};

impl Serialize for MajorSpec {
    /// `"auto"` or the major number, as users write it in the config.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MajorSpec::Auto => s.serialize_str("auto"),
            MajorSpec::Fixed(m) => s.serialize_u16(m.get()),
        }
    }
}

impl Cluster {
    /// The normalized config: every default filled in, roles under their canonical names,
    /// nodes in provisioning order (master, slaves, backup), and the network the nodes share.
    pub fn normalized(&self) -> Value {
        let nodes: Vec<&super::Node> = self.nodes().into_iter().collect();
        json!({
            "version": 1,
            "nodes": nodes,
            "network": { "prefix": self.prefix, "subnet": self.subnet() },
            "postgresql": self.postgresql,
            "replication": self.replication,
            "barman": self.barman,
            "monitoring": self.monitoring,
            "clients": self.clients,
        })
    }

    /// The nodes' network in CIDR notation, e.g. `192.168.11.0/24`.
    pub fn subnet(&self) -> String {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        let net = std::net::Ipv4Addr::from(u32::from(self.master.address) & mask);
        format!("{net}/{}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Cluster;

    const SEED: &str = include_str!("../../../../config/cluster.json");

    #[test]
    fn seed_config_normalizes_with_defaults_and_order() {
        let c = Cluster::parse(SEED, "cluster.json").unwrap();
        let v = c.normalized();
        let names: Vec<&str> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["master", "slave", "backup"]);
        assert_eq!(v["network"]["subnet"], "192.168.11.0/24");
        assert_eq!(v["postgresql"]["major"], "auto");
        assert_eq!(v["postgresql"]["port"], 5432);
        assert_eq!(v["postgresql"]["hot_standby_feedback"], true);
        assert_eq!(v["nodes"][1]["slot"], "pg_slot_1");
        assert_eq!(v["nodes"][0]["address"], "192.168.11.101");
        assert_eq!(v["replication"]["user"], "streaming_user");
        assert_eq!(v["barman"]["backup_schedule"], "0 3 * * *");
    }

    #[test]
    fn aliases_become_canonical_roles_and_order_follows_roles() {
        let text = r#"{"version":1,"nodes":[
            {"name":"b","role":"backup","address":"10.0.0.3"},
            {"name":"s","role":"standby","address":"10.0.0.2"},
            {"name":"p","role":"primary","address":"10.0.0.1"}],
            "network":{"prefix":16},"postgresql":{"major":17}}"#;
        let v = Cluster::parse(text, "t").unwrap().normalized();
        let roles: Vec<&str> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["master", "slave", "backup"]);
        assert_eq!(v["network"]["subnet"], "10.0.0.0/16");
        assert_eq!(v["postgresql"]["major"], 17);
    }
}
