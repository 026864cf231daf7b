//! Plain SSH hosts, as the Ansible inventory describes them (provision/ansible/inventory.example.ini
//! and what provision/ansible-lab writes): groups named by role, hosts by address, and the login
//! (`ansible_user`, `ansible_ssh_private_key_file`, `ansible_ssh_common_args`, `ansible_port`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use pgnode_core::config;

use crate::process::{run_bounded, Local};
use crate::target::{Command, GuestLayout, Output, Target};
use crate::text::quote_argv;

/// An INI inventory: hosts per group, child groups, vars per group and per host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub groups: BTreeMap<String, Vec<String>>,
    pub children: BTreeMap<String, Vec<String>>,
    pub group_vars: BTreeMap<String, BTreeMap<String, String>>,
    pub host_vars: BTreeMap<String, BTreeMap<String, String>>,
}

impl Inventory {
    /// Parses the INI format Ansible reads (comments `#` and `;`, `[g]`, `[g:vars]`, `[g:children]`).
    pub fn parse(text: &str) -> Inventory {
        let mut inv = Inventory::default();
        let mut section = ("ungrouped".to_string(), "");
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = match name.split_once(':') {
                    Some((g, "vars")) => (g.to_string(), "vars"),
                    Some((g, "children")) => (g.to_string(), "children"),
                    _ => (name.to_string(), ""),
                };
                continue;
            }
            let (group, kind) = (&section.0, section.1);
            match kind {
                "vars" => {
                    if let Some((k, v)) = line.split_once('=') {
                        let vars = inv.group_vars.entry(group.clone()).or_default();
                        vars.insert(k.trim().to_string(), unquote(v.trim()));
                    }
                }
                "children" => inv
                    .children
                    .entry(group.clone())
                    .or_default()
                    .push(line.to_string()),
                _ => inv.add_host(group, line),
            }
        }
        inv
    }

    fn add_host(&mut self, group: &str, line: &str) {
        let words = split_words(line);
        let Some((host, vars)) = words.split_first() else {
            return;
        };
        self.groups
            .entry(group.to_string())
            .or_default()
            .push(host.clone());
        let hv = self.host_vars.entry(host.clone()).or_default();
        for kv in vars {
            if let Some((k, v)) = kv.split_once('=') {
                hv.insert(k.to_string(), v.to_string());
            }
        }
    }

    /// Groups that hold `host`, directly or through `:children`, outermost first.
    fn groups_of(&self, host: &str) -> Vec<String> {
        let mut found: Vec<String> = vec!["all".into()];
        let mut frontier: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, hs)| hs.iter().any(|h| h == host))
            .map(|(g, _)| g.clone())
            .collect();
        let mut ordered = Vec::new();
        // Walk up parents; ancestors end up before their children so children's vars win.
        while let Some(g) = frontier.pop() {
            if ordered.contains(&g) {
                continue;
            }
            ordered.insert(0, g.clone());
            for (parent, kids) in &self.children {
                if kids.contains(&g) {
                    frontier.push(parent.clone());
                }
            }
        }
        found.extend(ordered);
        found
    }

    /// The effective vars of `host`: `all`, its groups' (parents first), then its own.
    pub fn vars(&self, host: &str) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for g in self.groups_of(host) {
            vars.extend(self.group_vars.get(&g).cloned().unwrap_or_default());
        }
        vars.extend(self.host_vars.get(host).cloned().unwrap_or_default());
        vars
    }

    /// Every host name, in a stable order.
    pub fn hosts(&self) -> Vec<String> {
        let mut all: Vec<String> = self.groups.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        all
    }
}

fn unquote(v: &str) -> String {
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

/// Words separated by blanks; single or double quotes group (as shlex does for simple cases).
pub fn split_words(s: &str) -> Vec<String> {
    let (mut words, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// How to log in to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    pub address: String,
    pub user: String,
    pub port: Option<String>,
    pub key: Option<String>,
    pub extra: Vec<String>,
}

/// SSH hosts: `ssh -i KEY -o ... USER@ADDR -- 'quoted argv'` (through `sudo -n` unless root),
/// optionally inside a network namespace (the lab's, where its subnet exists).
#[derive(Debug, Clone)]
pub struct Ssh {
    pub hosts: BTreeMap<String, SshHost>,
    pub netns: Option<PathBuf>,
    /// Where pgnode's files are on the hosts: Ansible's by default.
    pub layout: GuestLayout,
}

impl Ssh {
    /// Each config node's login, from the inventory host with the node's address.
    /// Errors: unreadable inventory, or a node it has no host for.
    pub fn from_inventory(
        path: &Path,
        cfg: &config::Cluster,
        netns: Option<PathBuf>,
    ) -> Result<Ssh, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
        let inv = Inventory::parse(&text);
        let mut hosts = BTreeMap::new();
        for n in cfg.nodes() {
            let addr = n.address.to_string();
            let host = inv
                .hosts()
                .into_iter()
                .find(|h| *h == addr || inv.vars(h).get("ansible_host") == Some(&addr))
                .ok_or_else(|| {
                    format!(
                        "inventory {} has no host for node {} ({addr})",
                        path.display(),
                        n.name
                    )
                })?;
            hosts.insert(n.name.to_string(), ssh_host(&addr, &inv.vars(&host)));
        }
        Ok(Ssh {
            hosts,
            netns,
            layout: GuestLayout::ansible(),
        })
    }

    /// The local process for `cmd` on `node`. Err: a node the inventory did not name.
    pub fn exec_local(&self, node: &str, cmd: &Command) -> io::Result<Local> {
        let h = self.hosts.get(node).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no SSH host for node {node}"),
            )
        })?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend([
                "nsenter".into(),
                format!("--net={}", ns.display()),
                "--".into(),
            ]);
        }
        argv.extend(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"].map(String::from));
        if let Some(p) = &h.port {
            argv.extend(["-p".to_string(), p.clone()]);
        }
        if let Some(k) = &h.key {
            argv.extend(["-i".to_string(), k.clone()]);
        }
        argv.extend(h.extra.iter().cloned());
        // From / as the lab's exec does: runuser'd tools then do not warn about root's home.
        let sudo = if h.user == "root" { "" } else { "sudo -n -- " };
        let remote = format!("cd / && {sudo}{}", quote_argv(&cmd.argv));
        argv.extend([format!("{}@{}", h.user, h.address), "--".into(), remote]);
        Ok(Local {
            argv,
            env: Vec::new(),
            cwd: None,
        })
    }
}

fn ssh_host(addr: &str, vars: &BTreeMap<String, String>) -> SshHost {
    let get = |k: &str| vars.get(k).cloned();
    SshHost {
        address: get("ansible_host").unwrap_or_else(|| addr.to_string()),
        user: get("ansible_user").unwrap_or_else(|| "root".into()),
        port: get("ansible_port"),
        key: get("ansible_ssh_private_key_file"),
        extra: split_words(&get("ansible_ssh_common_args").unwrap_or_default()),
    }
}

impl Target for Ssh {
    fn exec(&self, node: &str, cmd: &Command) -> io::Result<Output> {
        run_bounded(
            &self.exec_local(node, cmd)?,
            cmd.stdin.as_deref(),
            cmd.timeout,
        )
    }
    fn name(&self) -> &str {
        "ssh"
    }
    fn layout(&self) -> GuestLayout {
        self.layout.clone()
    }
}

#[cfg(test)]
mod tests;
