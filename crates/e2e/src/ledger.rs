//! The acknowledged-commit ledger: a client in the primary's guest inserts numbered rows, one
//! commit each, and reports each id whose commit returned OK, with the time it did. After a fault
//! a check proves its promise with [`LedgerReport::verify_on`]: every acknowledged id is there.
//!
//! The client is one psql session driven by a bash coproc, one statement at a time: psql prints
//! the `returning id` row only once the implicit transaction committed, so a printed id is an
//! acknowledged commit. A statement that fails is reported as failed; when psql dies or stops
//! answering, the id in flight is in doubt (its commit may or may not have happened).

use std::collections::BTreeSet;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::target::{Command, Output};
use crate::text::tail;
use crate::{ensure, fail, Failure, Node, Result};

/// The client, run in the guest as `bash -c CLIENT ledger TABLE DB COUNT SECONDS STOPFILE`.
/// One line per id: `ok ID TIME`, `fail ID TIME MESSAGE`, `lost ID TIME`; last `end WHY LAST`.
const CLIENT: &str = r#"set -u
table=$1 db=$2 count=$3 secs=$4 stop=$5
end=$(( ${EPOCHREALTIME%.*} + secs ))
coproc PSQL { exec runuser -u postgres -- stdbuf -oL psql -XAtq -d "$db" 2>&1; }
# bash unsets PSQL and PSQL_PID once psql is gone: keep the fds and the pid.
to=${PSQL[1]} from=${PSQL[0]} pid=$PSQL_PID
i=0 why=count
while (( i < count )); do
  [ -e "$stop" ] && { why=stop; break; }
  (( ${EPOCHREALTIME%.*} >= end )) && { why=time; break; }
  i=$((i + 1))
  if ! printf 'insert into %s (id) values (%d) returning id;\n\\echo ledger-end %d\n' "$table" "$i" "$i" >&"$to" 2>/dev/null; then
    printf 'lost %d %s\n' "$i" "$EPOCHREALTIME"; why=lost; break
  fi
  got=0 msg='' res=''
  while :; do
    if ! IFS= read -r -t 60 line <&"$from" 2>/dev/null; then res=lost; break; fi
    case $line in
      "ledger-end $i") break ;;
      "$i") got=1 ;;
      *) [ -n "$msg" ] || msg=$line ;;
    esac
  done
  if [ "$res" = lost ]; then printf 'lost %d %s\n' "$i" "$EPOCHREALTIME"; why=lost; break; fi
  if [ "$got" = 1 ]; then printf 'ok %d %s\n' "$i" "$EPOCHREALTIME"; else printf 'fail %d %s %s\n' "$i" "$EPOCHREALTIME" "$msg"; fi
done
exec {to}>&- 2>/dev/null
wait "$pid" 2>/dev/null
printf 'end %s %d\n' "$why" "$i""#;

/// The client that follows the primary, run on any node as `bash -c FOLLOW ledger TABLE CONNINFO
/// PASSFILE COUNT SECONDS STOPFILE`: the same protocol, but through a libpq connection string
/// (the read-write one `pgnode status` prints) instead of the local socket, and it does not end
/// when its connection does: the id in flight is reported `lost` (in doubt), and it connects
/// again with the same string, unchanged, until it finds a primary, the way an application's
/// pool would. Each `ok` line also names the server that acknowledged the commit. Connection
/// attempts that find no primary consume no id.
const FOLLOW: &str = r#"set -u
table=$1 conn=$2 passfile=$3 count=$4 secs=$5 stop=$6
end=$(( ${EPOCHREALTIME%.*} + secs ))
export PGPASSFILE=$passfile PGAPPNAME=pgnode-e2e-ledger
# A write to a psql that is gone must fail (and be reported), not kill the client.
trap '' PIPE
i=0 why=count pid='' to='' from=''
disconnect() {
  [ -n "$to" ] && exec {to}>&- 2>/dev/null
  [ -n "$from" ] && exec {from}<&- 2>/dev/null
  [ -n "$pid" ] && wait "$pid" 2>/dev/null
  pid='' to='' from=''
}
connect() {
  coproc PSQL { exec stdbuf -oL psql -XAtq -d "$conn" 2>&1; }
  to=${PSQL[1]} from=${PSQL[0]} pid=$PSQL_PID
  printf '\\echo ledger-ready\n' >&"$to" 2>/dev/null || { disconnect; return 1; }
  local line
  while IFS= read -r -t 20 line <&"$from" 2>/dev/null; do
    [ "$line" = ledger-ready ] && return 0
  done
  disconnect
  return 1
}
while (( i < count )); do
  [ -e "$stop" ] && { why=stop; break; }
  (( ${EPOCHREALTIME%.*} >= end )) && { why=time; break; }
  if [ -z "$pid" ]; then
    connect || { sleep 0.2; continue; }
  fi
  i=$((i + 1))
  sql="insert into $table (id) values ($i) returning id || ' ' || coalesce(host(inet_server_addr()), 'local');"
  if ! printf '%s\n\\echo ledger-end %d\n' "$sql" "$i" >&"$to" 2>/dev/null; then
    printf 'lost %d %s\n' "$i" "$EPOCHREALTIME"; disconnect; continue
  fi
  got='' msg='' res=''
  while :; do
    if ! IFS= read -r -t 60 line <&"$from" 2>/dev/null; then res=lost; break; fi
    case $line in
      "ledger-end $i") break ;;
      "$i "*) got=${line#* } ;;
      *) [ -n "$msg" ] || msg=$line ;;
    esac
  done
  if [ "$res" = lost ]; then printf 'lost %d %s\n' "$i" "$EPOCHREALTIME"; disconnect; continue; fi
  if [ -n "$got" ]; then printf 'ok %d %s %s\n' "$i" "$EPOCHREALTIME" "$got"; else printf 'fail %d %s %s\n' "$i" "$EPOCHREALTIME" "$msg"; fi
done
disconnect
printf 'end %s %d\n' "$why" "$i""#;

/// One acknowledged commit: the id and when (guest clock, Unix seconds) its commit returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ack {
    pub id: u64,
    pub at: f64,
}

/// What the ledger's client reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerReport {
    /// Commits that returned OK, in order.
    pub acked: Vec<Ack>,
    /// Statements that failed, with psql's first message line: their rows must not exist.
    pub failed: Vec<(u64, String)>,
    /// Ids whose outcome is unknown (psql died or stopped answering while they were in flight).
    pub in_doubt: Vec<u64>,
    /// Why the client ended: `count`, `time`, `stop`, `lost`, or empty if it never said.
    pub end: String,
    /// Bookkeeping errors: duplicate ids, ids out of order, lines that do not parse.
    pub problems: Vec<String>,
    /// The server address that acknowledged each commit (the following client names it).
    pub servers: std::collections::BTreeMap<u64, String>,
}

impl LedgerReport {
    /// Parses the client's stream (see the module docs). Never fails: what does not fit the
    /// format lands in `problems`.
    pub fn parse(stream: &str) -> LedgerReport {
        let mut r = LedgerReport::default();
        let mut seen = BTreeSet::new();
        let mut last = 0u64;
        for line in stream.lines().filter(|l| !l.trim().is_empty()) {
            let mut w = line.splitn(4, ' ');
            let (kind, id, at) = (w.next().unwrap_or_default(), w.next(), w.next());
            if kind == "end" {
                r.end = id.unwrap_or_default().to_string();
                continue;
            }
            let (Some(id), Some(at)) = (
                id.and_then(|s| s.parse::<u64>().ok()),
                at.and_then(|s| s.parse::<f64>().ok()),
            ) else {
                r.problems.push(format!("unparsable line: {line}"));
                continue;
            };
            if !seen.insert(id) {
                r.problems.push(format!("id {id} reported twice"));
                continue;
            }
            if id <= last {
                r.problems.push(format!("id {id} reported after {last}"));
            }
            last = last.max(id);
            match kind {
                "ok" => {
                    r.acked.push(Ack { id, at });
                    if let Some(server) = w.next().filter(|s| !s.is_empty()) {
                        r.servers.insert(id, server.to_string());
                    }
                }
                "fail" => r
                    .failed
                    .push((id, w.next().unwrap_or_default().to_string())),
                "lost" => r.in_doubt.push(id),
                _ => r.problems.push(format!("unknown outcome: {line}")),
            }
        }
        r.problems
            .extend(r.gaps().iter().map(|id| format!("id {id} has no outcome")));
        r
    }

    /// Ids below the highest reported one with no outcome at all (a client that skips ids).
    pub fn gaps(&self) -> Vec<u64> {
        let all: BTreeSet<u64> = self
            .acked
            .iter()
            .map(|a| a.id)
            .chain(self.failed.iter().map(|f| f.0))
            .chain(self.in_doubt.iter().copied())
            .collect();
        let max = all.iter().next_back().copied().unwrap_or(0);
        (1..=max).filter(|i| !all.contains(i)).collect()
    }

    /// Checks `table` on `node` holds every acknowledged id and none that failed. Ok: the number
    /// of acknowledged ids found. Err: the missing (and unexpected) ids as ranges.
    pub fn verify_on(&self, node: &Node, table: &str) -> Result<usize> {
        self.verify_in(node, "postgres", table)
    }

    /// [`LedgerReport::verify_on`] for a table in database `db`.
    pub fn verify_in(&self, node: &Node, db: &str, table: &str) -> Result<usize> {
        check_table_name(table)?;
        ensure(
            self.problems.is_empty(),
            "the ledger's own bookkeeping is inconsistent",
            self.problems.join("\n"),
        )?;
        let out = node.sql(db, &format!("select id from {table} order by id"))?;
        let present: BTreeSet<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        self.compare(&present, &node.name, table)
    }

    /// The pure part of [`LedgerReport::verify_on`].
    pub fn compare(&self, present: &BTreeSet<u64>, node: &str, table: &str) -> Result<usize> {
        let missing: Vec<u64> = self
            .acked
            .iter()
            .map(|a| a.id)
            .filter(|id| !present.contains(id))
            .collect();
        let phantom: Vec<u64> = self
            .failed
            .iter()
            .map(|f| f.0)
            .filter(|id| present.contains(id))
            .collect();
        if missing.is_empty() && phantom.is_empty() {
            return Ok(self.acked.len());
        }
        let mut evidence = vec![format!("missing acknowledged ids: {}", ranges(&missing))];
        if !phantom.is_empty() {
            evidence.push(format!(
                "present although their insert failed: {}",
                ranges(&phantom)
            ));
        }
        fail(
            format!(
                "{} of {} acknowledged commits missing from {table} on {node}",
                missing.len(),
                self.acked.len()
            ),
            evidence.join("\n"),
        )
    }
}

/// `1-3, 7, 9-10`.
pub fn ranges(ids: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// The table name goes into SQL as an identifier: plain lower-case names only.
fn check_table_name(table: &str) -> Result<()> {
    let ok = table.len() <= 63
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ensure(
        ok,
        format!("{table:?} is not a plain table name (a-z, 0-9, _)"),
        "",
    )
}

/// A running ledger client.
pub struct Ledger {
    node: Node,
    stop_file: String,
    handle: JoinHandle<Result<Output>>,
}

impl Ledger {
    /// Starts a ledger on `node` into a fresh `table` (dropped and created), for at most 300 s
    /// and 1,000,000 ids. Err: the table cannot be created.
    pub fn start(node: &Node, table: &str) -> Result<Ledger> {
        Ledger::start_bounded(node, table, 300, 1_000_000)
    }

    /// Like [`Ledger::start`] with explicit bounds: the client stops by itself after `seconds`
    /// or `count` ids, whichever comes first.
    pub fn start_bounded(node: &Node, table: &str, seconds: u32, count: u64) -> Result<Ledger> {
        check_table_name(table)?;
        node.sql(
            "postgres",
            &format!("drop table if exists {table}; create table {table} (id bigint primary key, at timestamptz not null default clock_timestamp())"),
        )?;
        Ledger::spawn(node, table, CLIENT, "postgres", None, seconds, count)
    }

    /// Starts the client that follows the primary (see [`FOLLOW`]) on `node`, connecting with
    /// `conninfo` and the password in `passfile` (a .pgpass file on `node`), into `table`,
    /// which must exist and be writable through that connection. Bounded like
    /// [`Ledger::start_bounded`].
    pub fn start_following(
        node: &Node,
        table: &str,
        conninfo: &str,
        passfile: &str,
        seconds: u32,
        count: u64,
    ) -> Result<Ledger> {
        check_table_name(table)?;
        Ledger::spawn(
            node,
            table,
            FOLLOW,
            conninfo,
            Some(passfile),
            seconds,
            count,
        )
    }

    /// Runs `script` (CLIENT or FOLLOW) on `node` in the background: its arguments are the
    /// table, the database or connection string, the passfile (FOLLOW only), then the bounds
    /// and the stop file.
    fn spawn(
        node: &Node,
        table: &str,
        script: &str,
        db: &str,
        passfile: Option<&str>,
        seconds: u32,
        count: u64,
    ) -> Result<Ledger> {
        let stop_file = format!("/run/pgnode-e2e-ledger-{table}.stop");
        // Removed here, before the client starts: were the client to remove it, a stop asked
        // right after the start could come first and be wiped, and the client would run to its
        // time bound.
        node.ok(&["rm", "-f", &stop_file])?;
        let mut argv: Vec<String> = ["bash", "-c", script, "ledger", table, db]
            .map(String::from)
            .to_vec();
        argv.extend(passfile.map(String::from));
        argv.extend([count.to_string(), seconds.to_string(), stop_file.clone()]);
        let cmd = Command::new(&argv).timeout(Duration::from_secs(u64::from(seconds) + 120));
        let worker = node.clone();
        let handle = thread::spawn(move || worker.exec(&cmd));
        Ok(Ledger {
            node: node.clone(),
            stop_file,
            handle,
        })
    }

    /// Asks the client to stop after the id in flight, waits for it and returns its report.
    /// Err: the client could not run, or its stream does not end with an `end` line.
    pub fn stop(self) -> Result<LedgerReport> {
        // If the client already ended by itself the stop file is harmless (removed below).
        let _ = self.node.run(&["touch", &self.stop_file]);
        let out = self
            .handle
            .join()
            .map_err(|_| Failure::new("the ledger's thread panicked", ""))??;
        let _ = self.node.run(&["rm", "-f", &self.stop_file]);
        let mut report = LedgerReport::parse(&out.stdout);
        if report.end.is_empty() && !report.acked.is_empty() {
            // The client was cut off without its last line (seen once when the primary under it
            // was killed): every `ok` it printed before is still an acknowledged commit, and the
            // next id is in doubt.
            let next = report.acked.last().map_or(1, |a| a.id + 1);
            report.in_doubt.push(next);
            report.end = "cut off".into();
        }
        if report.end.is_empty() {
            return fail(
                format!("the ledger client on {} did not finish", self.node),
                tail(&out.combined(), 20),
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
