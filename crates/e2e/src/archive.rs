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

/// Every WAL file from the oldest backup's begin_wal up to `last` is in Barman's archive. When
/// `last` is on a later timeline (promotions since that backup), each segment is expected on the
/// timeline a recovery reads it from, following `last`'s timeline history file in the archive.
/// Returns how many.
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
    let history = if begin.get(..8) == last.get(..8) {
        Vec::new()
    } else {
        let name = format!("{}.history", &last[..8]);
        let h = backup.barman(&["get-wal", server, &name])?;
        ensure(
            h.success(),
            format!("{name} is not in Barman's archive"),
            h.combined(),
        )?;
        parse_history(&h.stdout)
    };
    let missing = missing(&begin, last, &history, &have)?;
    ensure(
        missing.is_empty(),
        format!("{} WAL files missing from Barman's archive", missing.len()),
        missing.join("\n"),
    )?;
    Ok((segno(&begin)..=segno(last)).count())
}

pub use pgnode_core::pg::parse_history;

/// The WAL file names from `begin` to `last` that `have` lacks. Across timelines (`history` is
/// `last`'s timeline history), segment N is read from the newest timeline that began at or
/// before it: a timeline begins in the segment holding its parent's switch point (the parent's
/// copy of that segment is only a `.partial`).
fn missing(
    begin: &str,
    last: &str,
    history: &[(u32, u64)],
    have: &std::collections::BTreeSet<&str>,
) -> Result<Vec<String>> {
    let tli = |name: &str| u32::from_str_radix(&name[..8], 16).unwrap_or(0);
    let (first, newest) = (tli(begin), tli(last));
    // (timeline, first segment read from it), oldest first.
    let mut starts = vec![(first, 0u64)];
    for (t, sp) in history.iter().filter(|(t, _)| *t >= first) {
        let next = history
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n > t)
            .min()
            .unwrap_or(newest);
        starts.push((next, sp >> 24));
    }
    ensure(
        first == newest || starts.iter().any(|(t, _)| *t == newest) && history.iter().any(|(t, _)| *t == first),
        "the timeline changed since the oldest backup, and the history file does not lead from its timeline to the last one",
        format!("{begin} .. {last}; history {history:?}"),
    )?;
    Ok((segno(begin)..=segno(last))
        .map(|seg| {
            let t = starts
                .iter()
                .filter(|(_, from)| *from <= seg)
                .map(|(t, _)| *t)
                .max()
                .unwrap_or(first);
            format!("{t:08X}{:08X}{:08X}", seg >> 8, seg & 0xff)
        })
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
            &[],
            &have,
        )
        .unwrap();
        assert_eq!(m, vec!["0000000100000000000000FF".to_string()]);
        assert!(missing(
            "0000000100000000000000FE",
            "000000020000000100000000",
            &[],
            &have
        )
        .is_err());
    }

    #[test]
    fn across_promotions_each_segment_is_expected_on_its_timeline() {
        // TL1 ended at a segment boundary (0/A000000), TL2 inside segment C.
        let h = parse_history("1\t0/A000000\tno recovery target specified\n2\t0/C0000A0\tx\n");
        let names = [
            "000000010000000000000008",
            "000000010000000000000009",
            "00000002000000000000000A",
            "00000002000000000000000B",
            "00000003000000000000000C",
            "00000003000000000000000D",
        ];
        let have: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let m = missing(names[0], names[5], &h, &have).unwrap();
        assert!(m.is_empty(), "{m:?}");
        let without: std::collections::BTreeSet<&str> =
            names.into_iter().filter(|n| !n.ends_with('B')).collect();
        let m = missing(names[0], names[5], &h, &without).unwrap();
        assert_eq!(m, vec!["00000002000000000000000B".to_string()]);
        // TL3 forked from TL1 directly (TL2 abandoned): TL1's segments up to the fork.
        let m = missing(
            names[0],
            "00000003000000000000000B",
            &[(1, 0x0B00_0000)],
            &have,
        );
        assert_eq!(
            m.unwrap(),
            vec!["00000001000000000000000A", "00000003000000000000000B"]
        );
        // A history that does not name the oldest backup's timeline leads nowhere.
        let m = missing(names[0], names[5], &[(2, 0x0C00_00A0)], &have);
        assert!(m.is_err(), "{m:?}");
    }
}
