//! Shared core of pgnode: the validated config model, host facts, the step runner and its
//! report, the one module that runs commands, the one module that writes files, secrets and
//! the embedded template registry. Role crates build lists of steps out of these pieces.

pub mod common;
pub mod config;
pub mod ctx;
pub mod diff;
pub mod error;
pub mod exec;
pub mod files;
pub mod golden;
pub mod metrics;
pub mod monitoring;
pub mod pg;
pub mod render;
pub mod secrets;
pub mod status;
pub mod step;
pub mod system;
pub mod templates;
pub mod tls;
pub mod wait;

pub use ctx::Ctx;
pub use error::{Error, Result};
pub use step::{Check, Report, Step};
