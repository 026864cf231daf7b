//! The cluster under test: the config, parsed and validated by pgnode-core's own parser, and one
//! [`Node`] handle per configured node, all on the same [`Target`].

use std::path::Path;
use std::sync::Arc;

use pgnode_core::config::{self, Role};

use crate::node::Node;
use crate::target::Target;

/// The config and the nodes it names.
pub struct Cluster {
    pub config: config::Cluster,
    nodes: Vec<Node>,
    target: Arc<dyn Target>,
    primary: usize,
    backup: usize,
}

impl Cluster {
    /// Reads `path` with pgnode-core's parser. Errors: the parser's message (every problem), or a
    /// config without a primary or a backup node.
    pub fn load(path: &Path, target: Arc<dyn Target>) -> std::result::Result<Cluster, String> {
        let config = config::Cluster::load(path).map_err(|e| e.to_string())?;
        Cluster::new(config, target)
    }

    /// Node handles for every node of `config`, in provisioning order.
    pub fn new(
        config: config::Cluster,
        target: Arc<dyn Target>,
    ) -> std::result::Result<Cluster, String> {
        let nodes: Vec<Node> = config
            .nodes()
            .into_iter()
            .map(|n| Node::new(n.name.as_str(), n.role, n.address, target.clone()))
            .collect();
        let find = |role: Role| {
            nodes
                .iter()
                .position(|n| n.role == role)
                .ok_or_else(|| format!("the config has no {role} node"))
        };
        let (primary, backup) = (find(Role::Master)?, find(Role::Backup)?);
        Ok(Cluster {
            config,
            nodes,
            target,
            primary,
            backup,
        })
    }

    /// The PostgreSQL primary.
    pub fn primary(&self) -> &Node {
        &self.nodes[self.primary]
    }

    /// The hot standbys, in config order.
    pub fn standbys(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Slave)
            .collect()
    }

    /// The Barman node.
    pub fn backup(&self) -> &Node {
        &self.nodes[self.backup]
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every node, in provisioning order (primary, standbys, backup).
    pub fn nodes(&self) -> Vec<&Node> {
        self.nodes.iter().collect()
    }

    /// The target the nodes run on.
    pub fn target(&self) -> &dyn Target {
        self.target.as_ref()
    }

    /// The nodes' subnet as (network address, prefix length).
    pub fn subnet(&self) -> (std::net::Ipv4Addr, u8) {
        let prefix = self.config.prefix;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        (
            std::net::Ipv4Addr::from(u32::from(self.primary().address) & mask),
            prefix,
        )
    }
}
