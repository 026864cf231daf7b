//! The error type shared by every pgnode library crate. Each variant names the object it is
//! about (a file, a command, a template, a step) so that a failure can be acted upon at 3 a.m.

use std::path::PathBuf;

use crate::config::ConfigErrors;
use crate::exec::CmdError;

/// Everything that can go wrong while planning or converging a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster config is invalid; every problem is listed.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (or its mode/owner set).
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A user or group named in a file spec does not exist on the node.
    #[error("{kind} {name:?} does not exist (looked in {path})")]
    NoSuchAccount {
        kind: &'static str,
        name: String,
        path: PathBuf,
    },
    /// A template failed to render (strict mode: a missing key is an error).
    #[error("cannot render template {template}")]
    Template {
        template: String,
        #[source]
        source: Box<handlebars::RenderError>,
    },
    /// A command failed to start or exited non-zero.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The secrets file is unusable.
    #[error("secrets file {path}: {message}")]
    Secrets { path: PathBuf, message: String },
    /// A bounded wait ran out.
    #[error("timed out after {seconds}s waiting for {what}; last observation: {last}")]
    Timeout {
        what: String,
        seconds: u64,
        last: String,
    },
    /// Output of a tool could not be understood.
    #[error("cannot parse output of {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A fact about the node makes the requested change unsafe or impossible.
    #[error("{0}")]
    Refused(String),
    /// A step applied its change but its check still reports a difference.
    #[error("step did not converge: after applying, its check still says: {0}")]
    NotConverged(String),
}

/// Result alias for pgnode library crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;
