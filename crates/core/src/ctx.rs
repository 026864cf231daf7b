//! The context every step of a run shares: the validated cluster, this node's role, the root
//! all paths are taken under, the PostgreSQL major and Debian's paths derived from it, and the
//! secrets once they are loaded.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use crate::config::{Cluster, MajorSpec, Node, PgMajor, Role};
use crate::error::Result;
use crate::secrets::{self, Secrets};
use crate::system;

/// Home of Debian's `postgres` account (created by postgresql-common).
pub const POSTGRES_HOME: &str = "/var/lib/postgresql";
/// Home of Debian's `barman` account (created by the barman package).
pub const BARMAN_HOME: &str = "/var/lib/barman";

/// Shared state of one run.
pub struct Ctx {
    pub cluster: Cluster,
    /// The role of this node (`node.role`).
    pub role: Role,
    /// This node, from the cluster config.
    pub node: Node,
    /// Every node path is taken under this root ("/" on a real node).
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub major: PgMajor,
    pub dry_run: bool,
    /// Slave only: clone the master again even if the data directory is a standby of it
    /// (after its slot was invalidated). The old directory is set aside, not deleted.
    pub reclone: bool,
    /// Master only: promote this standby without proof that the old primary's WAL is all
    /// here (failover; the old primary is gone).
    pub force_promote: bool,
    /// Rendering only (the golden tests): tools a real run installs first may be missing.
    pub plan_only: bool,
    secrets: OnceCell<Secrets>,
}

impl Ctx {
    /// A context for `node` (one of `cluster`'s nodes); `major: auto` is resolved from the
    /// root's os-release.
    ///
    /// Errors: unreadable os-release, or a distribution without a known default major.
    pub fn new(
        cluster: Cluster,
        node: Node,
        root: &Path,
        config_path: &Path,
        dry_run: bool,
    ) -> Result<Ctx> {
        let major = match cluster.postgresql.major {
            MajorSpec::Fixed(m) => m,
            MajorSpec::Auto => {
                let (id, version) = system::os_release(root)?;
                system::default_major(&id, &version)?
            }
        };
        Ok(Ctx::with_major(
            cluster,
            node,
            root,
            config_path,
            major,
            dry_run,
        ))
    }

    /// A context with an explicit major (rendering, tests).
    pub fn with_major(
        cluster: Cluster,
        node: Node,
        root: &Path,
        config_path: &Path,
        major: PgMajor,
        dry_run: bool,
    ) -> Ctx {
        Ctx {
            cluster,
            role: node.role,
            node,
            root: root.to_path_buf(),
            config_path: config_path.to_path_buf(),
            major,
            dry_run,
            reclone: false,
            plan_only: false,
            force_promote: false,
            secrets: OnceCell::new(),
        }
    }

    /// This node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The PostgreSQL port.
    pub fn port(&self) -> u16 {
        self.cluster.postgresql.port.get()
    }

    /// The role names whose passwords the secrets file holds.
    pub fn users(&self) -> Vec<&str> {
        self.cluster.secret_names()
    }

    /// Where the secrets live: beside the config.
    pub fn secrets_path(&self) -> PathBuf {
        secrets::path_for(&self.config_path)
    }

    /// Hands the loaded secrets to the context (once).
    pub fn set_secrets(&self, s: Secrets) {
        let _ = self.secrets.set(s);
    }

    /// The secrets: loaded ones, or placeholders during a dry run before they exist.
    ///
    /// Errors: [`crate::Error::Secrets`] when they were not loaded yet outside a dry run.
    pub fn secrets(&self) -> Result<&Secrets> {
        if let Some(s) = self.secrets.get() {
            return Ok(s);
        }
        if self.dry_run {
            // A file from an older pgnode lacks the passwords a newer one adds: the run would
            // add them; the plan shows placeholders.
            if let Some(mut s) = secrets::load_any(
                &self.secrets_path(),
                &self.users(),
                &self.cluster.later_secret_names(),
            )? {
                for u in secrets::missing_passwords(&s, &self.users()) {
                    s.passwords.insert(
                        u.to_string(),
                        format!("<{u} password generated on first run>"),
                    );
                }
                return Ok(self.secrets.get_or_init(|| s));
            }
        } else if let Some(s) = secrets::load(&self.secrets_path(), &self.users())? {
            return Ok(self.secrets.get_or_init(|| s));
        }
        if self.dry_run {
            return Ok(self
                .secrets
                .get_or_init(|| Secrets::placeholder(&self.users())));
        }
        Err(crate::Error::Secrets {
            path: self.secrets_path(),
            message: "does not exist yet (run pgnode secrets, or any role, to create it)".into(),
        })
    }

    /// Password of a role from the secrets.
    pub fn password(&self, user: &str) -> Result<String> {
        Ok(self
            .secrets()?
            .password(user, &self.secrets_path())?
            .to_string())
    }

    /// `/etc/postgresql/<major>/main`.
    pub fn conf_dir(&self) -> PathBuf {
        PathBuf::from(format!("/etc/postgresql/{}/main", self.major))
    }

    /// `/var/lib/postgresql/<major>/main`.
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(format!("{POSTGRES_HOME}/{}/main", self.major))
    }

    /// `/usr/lib/postgresql/<major>/bin` (not on PATH on Debian).
    pub fn bin_dir(&self) -> PathBuf {
        PathBuf::from(format!("/usr/lib/postgresql/{}/bin", self.major))
    }

    /// A PostgreSQL server binary by name.
    pub fn bin(&self, name: &str) -> String {
        self.bin_dir().join(name).to_string_lossy().into_owned()
    }

    /// `postgresql@<major>-main`.
    pub fn service(&self) -> String {
        format!("postgresql@{}-main", self.major)
    }

    /// A node path under the root.
    pub fn path(&self, p: &Path) -> PathBuf {
        crate::files::under(&self.root, p)
    }
}
