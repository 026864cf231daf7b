//! The checks, one file each, and the one list that registers them in run order.
//!
//! To add a check: write `checks/NAME.rs` with `pub fn run(cx: &mut Ctx) -> Result<()>`, add
//! `mod NAME;` below and one `check!("NAME", NAME::run),` line to [`ALL`] where it should run.

use crate::check;
use crate::runner::Check;

mod backup;
mod backup_idle;
mod bad_config;
mod drift;
mod drill;
mod forced_command;
mod idempotence;
mod incremental;
mod network;
mod replication;
mod restore;
mod secrets_hidden;
mod security;
mod standby;
mod status;
mod tls;

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
];
