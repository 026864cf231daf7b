//! The checks, one file each, and the one list that registers them in run order.
//!
//! To add a check: write `checks/NAME.rs` with `pub fn run(cx: &mut Ctx) -> Result<()>`, add
//! `mod NAME;` below and one `check!("NAME", NAME::run),` line to [`ALL`] where it should run.

use crate::check;
use crate::runner::Check;

mod backup;
mod backup_idle;
mod bad_config;
mod day2;
mod disaster;
mod drift;
pub(crate) mod drill;
mod failover;
mod fault_backup_down;
mod fault_concurrent;
mod fault_interrupted;
mod fault_partition;
mod fault_primary_kill;
mod fault_primary_poweroff;
mod fault_reboot;
mod fault_slot_lost;
mod fault_standby_down;
mod forced_command;
mod idempotence;
mod incremental;
mod monitoring;
mod network;
mod pitr_timeline;
mod promotion_soak;
mod replication;
mod restore;
mod secrets_hidden;
mod security;
mod standby;
mod standbys;
mod status;
mod switchover;
mod tls;
mod zero_loss;

pub use promotion_soak::set_promotions as set_soak_promotions;

/// Every check, in run order.
pub const ALL: &[Check] = &[
    check!("network", network::run),
    check!("replication", replication::run),
    check!("standby", standby::run),
    check!("backup", backup::run),
    check!("backup-idle", backup_idle::run),
    check!("restore", restore::run),
    check!("drill", drill::run),
    check!("incremental", incremental::run),
    check!("idempotence", idempotence::run),
    check!("drift", drift::run),
    check!("status", status::run),
    check!("security", security::run),
    check!("bad-config", bad_config::run),
    check!("tls", tls::run),
    check!("forced-command", forced_command::run),
    check!("secrets-hidden", secrets_hidden::run),
    // Issue 18: exporters, Prometheus, Alertmanager; faults raise their alerts.
    check!("monitoring", monitoring::run),
    // The fault drills (issue 9): each leaves the cluster healthy and as configured.
    check!("fault-standby-down", fault_standby_down::run),
    check!("fault-slot-lost", fault_slot_lost::run),
    check!("fault-partition", fault_partition::run),
    check!("fault-primary-kill", fault_primary_kill::run),
    check!("fault-primary-poweroff", fault_primary_poweroff::run),
    check!("fault-backup-down", fault_backup_down::run),
    check!("fault-reboot", fault_reboot::run),
    check!("fault-interrupted", fault_interrupted::run),
    check!("fault-concurrent", fault_concurrent::run),
    // Day-2 (issue 10): each switches roles through a config written beside the cluster's and
    // restores the original topology, passed or not.
    check!("switchover", switchover::run),
    check!("pitr-timeline", pitr_timeline::run),
    check!("failover", failover::run),
    check!("zero-loss", zero_loss::run),
    // Issue 17: promotions in a row (--soak-promotions N, default 5), Barman following each.
    check!("promotion-soak", promotion_soak::run),
    // Last of the three-node suite: it rebuilds the primary from Barman alone.
    check!("disaster", disaster::run),
    // Needs a config with two standbys (PGNODE_LAB_CONFIG=config/e2e-two-standbys.json).
    check!("standbys", standbys::run),
];
