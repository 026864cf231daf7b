//! `pgnode status --prometheus FILE`: the facts of `pgnode status` in Prometheus' text
//! exposition format (version 0.0.4), for node_exporter's textfile collector.
//!
//! Gatherers attach [`Sample`]s to the [`NodeStatus`] beside its items; this module adds what
//! every node reports (health, each item, the node, its certificates), renders the text (one
//! `# HELP` and `# TYPE` per family, families and series sorted, label values escaped, NaN left
//! out) and writes the file atomically, so the collector never reads half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::{Error, Result};
use crate::files::{self, FileSpec};
use crate::status::NodeStatus;
use crate::{tls, Ctx};

mod families;

pub use families::{family, Family, Kind, FAMILIES};

/// A sample's labels: names and values, in the order they are written.
pub type Labels = Vec<(&'static str, String)>;

/// One sample: a metric name (one of [`FAMILIES`]), its labels in order, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// A sample with labels given as pairs.
    pub fn new(name: &'static str, labels: &[(&'static str, &str)], value: f64) -> Self {
        Sample {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        }
    }
}

/// 1 or 0.
pub fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// What both PostgreSQL roles report of the local server: `None` when it did not answer; else
/// whether it is in recovery and its timeline (when psql printed one).
pub fn postgresql(s: &mut NodeStatus, answered: Option<(bool, Option<u32>)>, major: u16) {
    s.flag("pgnode_postgresql_up", &[], answered.is_some());
    s.metric("pgnode_postgresql_major", &[], f64::from(major));
    if let Some((in_recovery, timeline)) = answered {
        s.flag("pgnode_postgresql_in_recovery", &[], in_recovery);
        if let Some(t) = timeline {
            s.metric("pgnode_postgresql_timeline", &[], f64::from(t));
        }
    }
}

/// The certificates whose expiry is exported, when the node has them.
pub const CERTIFICATES: [&str; 2] = [tls::CERT_FILE, tls::CA_FILE];

/// The whole exposition text for `s`, gathered on `ctx`'s node: its samples, the summary every
/// node reports and the expiry of each certificate present. Also returns what could not be
/// read (each certificate whose date is unknown is left out and named there).
pub fn exposition(ctx: &Ctx, s: &NodeStatus) -> (String, Vec<String>) {
    let (mut samples, problems) = certificates(ctx);
    let elapsed = s.started.elapsed().unwrap_or_default().as_secs_f64();
    samples.extend(summary(s, elapsed));
    samples.extend(s.samples.iter().cloned());
    (render(&samples), problems)
}

/// What every node reports: when and how long, healthy, each status item, the node itself.
/// Two items of one name (two `receive-wal` lines) give one series: [`render`] keeps the lowest.
pub fn summary(s: &NodeStatus, elapsed: f64) -> Vec<Sample> {
    let at = s
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut out = vec![
        Sample::new("pgnode_status_timestamp_seconds", &[], at),
        Sample::new("pgnode_status_collect_duration_seconds", &[], elapsed),
        Sample::new("pgnode_status_healthy", &[], bool_value(s.healthy)),
        Sample::new(
            "pgnode_node_info",
            &[
                ("node", &s.node),
                ("role", &s.role),
                ("address", &s.address),
            ],
            1.0,
        ),
    ];
    out.extend(s.items.iter().map(|i| {
        Sample::new(
            "pgnode_status_check_ok",
            &[("check", &i.check)],
            bool_value(i.ok),
        )
    }));
    out
}

/// The expiry of each of [`CERTIFICATES`] the node has, and the problems reading them.
fn certificates(ctx: &Ctx) -> (Vec<Sample>, Vec<String>) {
    let (mut samples, mut problems) = (Vec::new(), Vec::new());
    for file in CERTIFICATES {
        let on_node = ctx.path(Path::new(file));
        if !on_node.exists() {
            continue;
        }
        match tls::expiry(&on_node) {
            Ok(t) => samples.push(Sample::new(
                "pgnode_tls_certificate_expiry_timestamp_seconds",
                &[("file", file)],
                t as f64,
            )),
            Err(e) => problems.push(crate::step::chain(&e)),
        }
    }
    (samples, problems)
}

/// The text exposition of `samples`: families sorted by name, each with one `# HELP` and one
/// `# TYPE` line, then its series sorted by labels. A series given twice keeps its lowest
/// value (for 0/1 gauges: a failure wins), since the collector refuses a file that repeats one.
/// NaN is never written (the series is left out).
pub fn render(samples: &[Sample]) -> String {
    let mut by_family: BTreeMap<&str, BTreeMap<&Labels, f64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| !s.value.is_nan()) {
        let series = by_family.entry(s.name).or_default();
        let v = series.entry(&s.labels).or_insert(s.value);
        *v = v.min(s.value);
    }
    let mut out = String::new();
    for (name, series) in by_family {
        match family(name) {
            Some(f) => {
                out.push_str(&format!("# HELP {name} {}\n", escape_help(f.help)));
                out.push_str(&format!("# TYPE {name} {}\n", f.kind.as_str()));
            }
            None => out.push_str(&format!("# TYPE {name} untyped\n")),
        }
        for (labels, value) in series {
            out.push_str(&format!("{name}{} {}\n", label_set(labels), number(value)));
        }
    }
    out
}

fn label_set(labels: &[(&str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A help text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// A value as Go's ParseFloat reads it (Rust's `Display` never uses an exponent).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// Writes the exposition text to `path` through the one file writer (0644, temp file in the
/// same directory, fsync, rename): node_exporter reads either the old file or the new one. The
/// temp name does not end in `.prom`, so the collector never picks it up.
///
/// Errors: [`Error::Write`] naming the file, also when its directory does not exist (it is
/// not created: a mistyped path should not grow a directory tree).
pub fn write(path: &Path, text: &str) -> Result<()> {
    let werr = |p: PathBuf, e: std::io::Error| Error::Write { path: p, source: e };
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| werr(path.to_path_buf(), e))?
            .join(path)
    };
    if !path.parent().is_some_and(|d| d.is_dir()) {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "its directory does not exist");
        return Err(werr(path, e));
    }
    let spec = FileSpec::new(&path, text, "root", 0o644);
    files::write(Path::new("/"), &spec, false)?;
    Ok(())
}

#[cfg(test)]
mod tests;
