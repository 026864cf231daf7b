//! Every metric pgnode exports: name, type, labels and help. The names are a contract with the
//! alert rules written against them; docs/operations.md lists the same families (a test in the
//! pgnode crate keeps the two in step).

/// A metric's type in the exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// Its label names, comma-separated ("" for none).
    pub labels: &'static str,
    pub help: &'static str,
}

const fn g(name: &'static str, labels: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn c(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        labels: "",
        help,
    }
}

/// The families, by role: every node, the PostgreSQL nodes, the master, the slave, the backup.
#[rustfmt::skip]
pub const FAMILIES: &[Family] = &[
    g("pgnode_status_timestamp_seconds", "", "When pgnode status gathered these facts (unix time)."),
    g("pgnode_status_collect_duration_seconds", "", "How long gathering the facts took."),
    g("pgnode_status_healthy", "", "1 when every status item is OK (pgnode status would exit 0)."),
    g("pgnode_status_check_ok", "check", "1 when the status item named check is OK (items sharing a name: the lowest)."),
    g("pgnode_node_info", "node,role,address", "This node as the config names it (always 1)."),
    g("pgnode_tls_certificate_expiry_timestamp_seconds", "file", "When the certificate in file expires (notAfter, unix time)."),
    g("pgnode_postgresql_up", "", "1 when the local PostgreSQL answered a query."),
    g("pgnode_postgresql_in_recovery", "", "1 when the local PostgreSQL is in recovery (a standby)."),
    g("pgnode_postgresql_timeline", "", "Timeline of the last checkpoint (restartpoint on a standby)."),
    g("pgnode_postgresql_major", "", "The PostgreSQL major version this node runs."),
    g("pgnode_replication_streaming", "client,kind", "1 when the client's walsender is in state streaming."),
    g("pgnode_replication_replay_lag_bytes", "client", "Bytes of WAL the standby has not replayed yet."),
    g("pgnode_replication_flush_lag_bytes", "client", "Bytes of WAL the client has not flushed yet."),
    g("pgnode_replication_replay_lag_seconds", "client", "The standby's replay lag as the primary measures it (0 when idle)."),
    g("pgnode_slot_present", "slot", "1 when the replication slot exists on the primary."),
    g("pgnode_slot_active", "slot", "1 when a client streams through the slot."),
    g("pgnode_slot_lost", "slot", "1 when the slot was invalidated (wal_status lost)."),
    g("pgnode_slot_wal_status", "slot,status", "1 for the slot's current wal_status."),
    g("pgnode_slot_retained_bytes", "slot", "Bytes of WAL the slot holds back."),
    g("pgnode_slot_safe_wal_size_bytes", "slot", "Bytes of WAL that can still be written before the slot is lost."),
    c("pgnode_archiver_archived_total", "WAL files archive_command archived (pg_stat_archiver)."),
    c("pgnode_archiver_failed_total", "Failed archive_command attempts (pg_stat_archiver)."),
    g("pgnode_archiver_failing", "", "1 when the last archiving attempt failed."),
    g("pgnode_archiver_last_archived_timestamp_seconds", "", "When the last WAL file was archived (unix time)."),
    g("pgnode_standby_streaming", "", "1 when this standby's WAL receiver is streaming."),
    g("pgnode_standby_replay_lag_bytes", "", "Bytes this standby received but has not replayed yet."),
    g("pgnode_barman_check_ok", "check", "1 when the barman check line named check is OK."),
    g("pgnode_barman_check_failed", "", "How many barman check lines fail."),
    g("pgnode_barman_last_backup_timestamp_seconds", "", "End of the newest DONE backup (unix time)."),
    g("pgnode_barman_backups", "status", "Barman's backups of the server, by status."),
    g("pgnode_barman_receive_wal_ok", "", "1 when receive-wal runs and nothing says it cannot stream."),
    g("pgnode_restore_drill_last_timestamp_seconds", "", "When the last restore drill started (unix time)."),
    g("pgnode_restore_drill_success", "", "1 when the last restore drill passed."),
    g("pgnode_restore_drill_ok", "", "1 when the restore drill is judged healthy (not failed, not stale)."),
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}
