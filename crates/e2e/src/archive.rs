//! Barman's WAL archive seen from the checks: whether it holds every WAL file from its oldest
//! backup up to a given one, without a gap. Drills that break WAL delivery (the backup node down,
//! Barman's slot lost) prove with it that archive_command filled what streaming missed.

use crate::{ensure, fail, pending, wait_for, Node, Result};

/// Closes the primary's current WAL file (the one holding everything written so far) and waits,
/// bounded by `timeout`, until the primary's archiver has delivered it. Returns its name.
pub fn close_and_archive(primary: &Node, timeout: std::time::Duration) -> Result<String> {
    let last = primary.sql("postgres", "select pg_walfile_name(pg_current_wal_lsn())")?;
    primary.sql("postgres", "select pg_switch_wal()")?;
    let q = format!("select last_archived_wal >= '{last}' from pg_stat_archiver");
    primary.poll_until("postgres", &q, "t", timeout)?;
    Ok(last)
}

/// Waits, bounded by `timeout`, until Barman's archive holds every WAL file from its oldest
/// backup's begin WAL up to `last` (Barman's cron moves what archive_command delivered into the
/// archive once a minute). Returns how many files that range holds.
pub fn wait_gapless(
    backup: &Node,
    server: &str,
    last: &str,
    timeout: std::time::Duration,
) -> Result<usize> {
    wait_for(
        &format!("Barman's WAL archive to be gapless up to {last}"),
        timeout,
        || match gapless(backup, server, last) {
            Ok(n) => Ok(Some(n)),
            Err(e) => pending(e.to_string()),
        },
    )
}

/// Every WAL file from the oldest backup's begin_wal up to `last` (same timeline) is in Barman's
/// archive. Returns how many.
pub fn gapless(backup: &Node, server: &str, last: &str) -> Result<usize> {
    let list = backup.barman(&["list-backups", "--minimal", server])?;
    let Some(oldest) = list
        .stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .map(str::trim)
    else {
        return fail("Barman lists no backup", list.combined());
    };
    let show = backup.barman(&["show-backup", server, oldest])?;
    let Some(begin) = show.stdout.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Begin WAL")
            .map(|r| r.trim_start_matches([' ', ':']).trim().to_string())
    }) else {
        return fail(
            format!("no Begin WAL in barman show-backup {oldest}"),
            show.combined(),
        );
    };
    let out = backup.ok(&["sh", "-c", &format!("ls /var/lib/barman/{server}/wals/*/ | grep -E '^[0-9A-F]{{24}}(\\.(gz|bz2|xz|zst|lz4|snappy))?$' | cut -c1-24 | sort -u")])?;
    let have: std::collections::BTreeSet<&str> = out.lines().collect();
    let missing = missing(&begin, last, &have)?;
    ensure(
        missing.is_empty(),
        format!("{} WAL files missing from Barman's archive", missing.len()),
        missing.join("\n"),
    )?;
    Ok((segno(&begin)..=segno(last)).count())
}

/// The WAL file names from `begin` to `last` (one timeline) that `have` lacks.
fn missing(
    begin: &str,
    last: &str,
    have: &std::collections::BTreeSet<&str>,
) -> Result<Vec<String>> {
    let tli = &begin[..8];
    ensure(
        &last[..8] == tli,
        "the timeline changed since the oldest backup: this check compares one timeline",
        format!("{begin} .. {last}"),
    )?;
    Ok((segno(begin)..=segno(last))
        .map(|seg| format!("{tli}{:08X}{:08X}", seg >> 8, seg & 0xff))
        .filter(|name| !have.contains(name.as_str()))
        .collect())
}

/// Segment number of a WAL file name (16 MB segments: 256 per "log" id).
fn segno(name: &str) -> u64 {
    let log = u64::from_str_radix(&name[8..16], 16).unwrap_or(0);
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap_or(0);
    log * 256 + seg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_across_a_log_boundary_is_named() {
        let have: std::collections::BTreeSet<&str> =
            ["0000000100000000000000FE", "000000010000000100000000"]
                .into_iter()
                .collect();
        let m = missing(
            "0000000100000000000000FE",
            "000000010000000100000000",
            &have,
        )
        .unwrap();
        assert_eq!(m, vec!["0000000100000000000000FF".to_string()]);
        assert!(missing(
            "0000000100000000000000FE",
            "000000020000000100000000",
            &have
        )
        .is_err());
    }
}
