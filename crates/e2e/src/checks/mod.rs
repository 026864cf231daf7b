//! The checks, one file each, and the one list that registers them in run order.
//!
//! To add a check: write `checks/NAME.rs` with `pub fn run(cx: &mut Ctx) -> Result<()>`, add
//! `mod NAME;` below and one `check!("NAME", NAME::run),` line to [`ALL`] where it should run.

use crate::check;
use crate::runner::Check;

mod backup;
mod drift;
mod idempotence;
mod network;
mod replication;
mod restore;
mod security;
mod standby;
mod status;

/// Every check, in run order.
pub const ALL: &[Check] = &[
    check!("network", network::run),
    check!("replication", replication::run),
    check!("standby", standby::run),
    check!("backup", backup::run),
    check!("restore", restore::run),
    check!("idempotence", idempotence::run),
    check!("drift", drift::run),
    check!("status", status::run),
    check!("security", security::run),
];
