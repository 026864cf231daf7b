//! No secret leaks while pgnode works. Promise: during a converge that really uses the secrets
//! (a password reset on the primary, passfiles and the TLS key rewritten), no password and no
//! private key appears in any process's argv or environment on any node (a sampler reads every
//! /proc/PID/cmdline and environ in a loop while the roles run), nor in the journal, the
//! provisioning output or `--dry-run` output.

use std::time::Duration;

use crate::{ensure, fail, Command, Ctx, Node, Result};

const NEEDLES: &str = "/tmp/pgnode-e2e-needles";
const STOP: &str = "/tmp/pgnode-e2e-sampler.stop";

/// Samples argv and environ of every process until the stop file appears (at most 10 minutes).
/// Prints one line per hit (the /proc file and the command name, never the secret), then a count.
const SAMPLER: &str = r#"n=0; end=$(( $(date +%s) + 600 ))
while [ ! -e "$2" ] && [ "$(date +%s)" -lt "$end" ]; do
  grep -aFl -f "$1" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | while read -r f; do
    echo "HIT $f $(cat "${f%/*}/comm" 2>/dev/null)"
  done
  n=$((n+1))
done
echo "samples=$n""#;

/// Passwords, and a line from the middle of each private key.
fn needles(secrets: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(secrets)
        .map_err(|e| crate::Failure::new("the secrets file is not JSON", e.to_string()))?;
    let mut out: Vec<String> = v["passwords"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut keys = vec![
        &v["archive_ssh_key"]["private"],
        &v["backup_host_key"]["private"],
        &v["tls"]["ca"]["key"],
    ];
    if let Some(nodes) = v["tls"]["nodes"].as_object() {
        keys.extend(nodes.values().map(|n| &n["key"]));
    }
    for k in keys.into_iter().filter_map(|k| k.as_str()) {
        let lines: Vec<&str> = k.lines().filter(|l| !l.starts_with("-----")).collect();
        if let Some(mid) = lines.get(lines.len() / 2) {
            out.push(mid.to_string());
        }
    }
    ensure(
        out.len() >= 5,
        "too few secrets found to look for",
        out.len().to_string(),
    )?;
    Ok(out)
}

pub fn run(cx: &mut Ctx) -> Result<()> {
    let layout = cx.cluster.target().layout();
    let primary = cx.cluster.primary();
    let needles = needles(&primary.file(&layout.secrets)?)?;
    let nodes = cx.cluster.nodes();
    let list = format!("{}\n", needles.join("\n"));
    for n in &nodes {
        n.ok(&["install", "-m", "600", "/dev/null", NEEDLES])?;
        let out = n.run_stdin(
            &["dd", &format!("of={NEEDLES}"), "status=none"],
            list.as_bytes(),
        )?;
        ensure(
            out.success(),
            format!("{n}: cannot write the needle list"),
            out.combined(),
        )?;
        n.ok(&["rm", "-f", STOP])?;
    }
    force_work(cx)?;
    let target = cx.cluster.target();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (samples, converges) = std::thread::scope(|s| {
        let samplers: Vec<_> = names
            .iter()
            .map(|name| {
                s.spawn(move || {
                    let cmd = Command::new(&["sh", "-c", SAMPLER, "sampler", NEEDLES, STOP])
                        .timeout(Duration::from_secs(660));
                    target.exec(name, &cmd).map_err(|e| {
                        crate::Failure::new(
                            format!("{name}: the sampler could not run"),
                            e.to_string(),
                        )
                    })
                })
            })
            .collect();
        let converges: Vec<Result<crate::Output>> = nodes.iter().map(|n| n.provision()).collect();
        for n in &nodes {
            let _ = n.run(&["touch", STOP]);
        }
        let samples: Vec<Result<crate::Output>> = samplers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| crate::fail("sampler thread panicked", ""))
            })
            .collect();
        (samples, converges)
    });
    let mut counts = Vec::new();
    for (n, (sample, conv)) in nodes.iter().zip(samples.into_iter().zip(converges)) {
        let conv = conv?;
        ensure(
            conv.success(),
            format!("{n}: the converge failed"),
            conv.combined(),
        )?;
        leak_free(
            &needles,
            &conv.combined(),
            &format!("{n}: the provisioning output"),
        )?;
        let out = sample?;
        let hits: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("HIT "))
            .collect();
        if !hits.is_empty() {
            return fail(
                format!("{n}: a secret appeared in a process's argv or environment"),
                hits.join("\n"),
            );
        }
        let count = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("samples="))
            .unwrap_or("0")
            .to_string();
        ensure(
            count != "0",
            format!("{n}: the sampler took no sample"),
            out.combined(),
        )?;
        counts.push(format!("{n} {count}"));
        journal_and_dry_run(n, &needles)?;
        let _ = n.run(&["rm", "-f", NEEDLES, STOP]);
    }
    cx.note(format!("converge with a password reset and rewritten passfiles/TLS key; /proc samples of argv+environ: {}; no secret found", counts.join(", ")));
    cx.note("no secret in the provisioning output, the journal (last 30 min) or --dry-run output");
    Ok(())
}

/// Makes the roles handle secrets for real: a wrong password on the primary for Barman's role
/// (the master role sets it again through psql's stdin), passfiles and the TLS key removed.
fn force_work(cx: &Ctx) -> Result<()> {
    let c = &cx.cluster.config;
    let primary = cx.cluster.primary();
    primary.sql(
        "postgres",
        &format!(
            "ALTER ROLE {} PASSWORD 'pgnode-e2e-not-the-password'",
            c.barman.user
        ),
    )?;
    primary.ok(&["rm", "-f", "/etc/ssl/pgnode/server.key"])?;
    for s in cx.cluster.standbys() {
        s.ok(&["rm", "-f", "/var/lib/postgresql/.pgpass"])?;
    }
    cx.cluster
        .backup()
        .ok(&["rm", "-f", "/var/lib/barman/.pgpass"])?;
    Ok(())
}

fn leak_free(needles: &[String], text: &str, what: &str) -> Result<()> {
    match needles.iter().position(|n| text.contains(n.as_str())) {
        Some(i) => fail(
            format!("{what} contains secret number {i} of the secrets file"),
            "",
        ),
        None => Ok(()),
    }
}

fn journal_and_dry_run(n: &Node, needles: &[String]) -> Result<()> {
    let j = n.run(&[
        "sh",
        "-c",
        "journalctl -q --no-pager -o cat --since '-30 min' | grep -aFc -f \"$0\"",
        NEEDLES,
    ])?;
    ensure(
        j.stdout.trim() == "0",
        format!("{n}: the journal holds a secret"),
        format!("{} matching lines", j.stdout.trim()),
    )?;
    let role = n.role.as_str();
    let dry = n.pgnode(&["--role", role, "--dry-run"])?;
    leak_free(
        needles,
        &dry.combined(),
        &format!("{n}: pgnode --role {role} --dry-run"),
    )
}
