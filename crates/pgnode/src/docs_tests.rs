//! `pgnode --help` and the command-line reference `docs/cli.md` cannot drift apart: clap's own
//! model of the CLI (`CommandFactory`) names every subcommand and flag, and each must be in the
//! reference, in the section of its command. And the help stands on its own: every flag says
//! what it does, and every command ends with an example.

use clap::CommandFactory;

use crate::Cli;

/// Every command as (`pgnode` or `pgnode SUB`, its long flags): after `build()`, so the global
/// flags and clap's own `--help`/`--version` are there too. A subcommand's list leaves out the
/// global flags and `--help`: they are documented once, with `pgnode` itself.
fn commands() -> Vec<(String, Vec<String>)> {
    let mut root = Cli::command();
    root.build();
    let flags = |c: &clap::Command, top: bool| -> Vec<String> {
        c.get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter(|a| top || (!a.is_global_set() && a.get_id() != "help"))
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect()
    };
    let mut out = vec![("pgnode".to_string(), flags(&root, true))];
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        out.push((format!("pgnode {}", sub.get_name()), flags(sub, false)));
    }
    out
}

/// The text of the section of `page` whose heading names `` `title` ``, up to the next heading
/// of the same or a higher level.
fn section<'a>(page: &'a str, title: &str) -> Option<&'a str> {
    let wanted = format!("`{title}`");
    let mut start = None;
    let mut level = 0;
    let mut offset = 0;
    for line in page.split_inclusive('\n') {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            if let Some(s) = start {
                if hashes <= level {
                    return Some(&page[s..offset]);
                }
            } else if line.contains(&wanted) {
                start = Some(offset);
                level = hashes;
            }
        }
        offset += line.len();
    }
    start.map(|s| &page[s..])
}

#[test]
fn every_subcommand_and_flag_is_in_the_cli_reference() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let page = std::fs::read_to_string(&path).expect("docs/cli.md");
    let mut missing = Vec::new();
    for (command, flags) in commands() {
        let Some(text) = section(&page, &command) else {
            missing.push(format!("a heading naming `{command}`"));
            continue;
        };
        for f in flags {
            if !text.contains(&format!("`{f}")) {
                missing.push(format!("`{f}` in the section of `{command}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/cli.md lacks what `pgnode --help` has: {missing:#?}"
    );
}

#[test]
fn the_help_explains_every_flag_and_shows_an_example() {
    let mut root = Cli::command();
    root.build();
    let mut all = vec![&root];
    all.extend(root.get_subcommands().filter(|s| s.get_name() != "help"));
    for c in all {
        assert!(
            c.get_about().is_some(),
            "{} has no description",
            c.get_name()
        );
        let after = c
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(
            after.starts_with("Example"),
            "`{} --help` ends without an example: {after:?}",
            c.get_name()
        );
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            assert!(
                a.get_help().is_some(),
                "--{} of {} says nothing about what it does",
                a.get_id(),
                c.get_name()
            );
        }
    }
    let top = root.get_after_help().unwrap().to_string();
    for code in ["0  converged", "1  a step failed", "2  bad usage"] {
        assert!(top.contains(code), "exit code {code:?} not in --help");
    }
}

#[test]
fn the_cli_model_is_consistent() {
    Cli::command().debug_assert();
    assert!(commands().len() >= 5, "{:?}", commands());
}

/// The metrics list of docs/operations.md names every metric `--prometheus` can write, each
/// with its labels, and no other.
#[test]
fn every_metric_is_in_the_operations_guide_with_its_labels() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let page = std::fs::read_to_string(&path).expect("docs/operations.md");
    let start = page
        .find("\n### Metrics pgnode exports\n")
        .expect("a section `### Metrics pgnode exports`");
    let rest = &page[start + 1..];
    let end = rest[4..].find("\n#").map_or(rest.len(), |e| e + 5);
    let text = &rest[..end];
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| `pgnode_"))
        .collect();
    let families = pgnode_core::metrics::FAMILIES;
    for f in families {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| `{}` |", f.name)))
            .unwrap_or_else(|| panic!("docs/operations.md lists no {}", f.name));
        let labels: Vec<&str> = row.split('|').nth(2).unwrap_or("").split(',').collect();
        let labels: Vec<&str> = labels.iter().map(|l| l.trim().trim_matches('`')).collect();
        let want: Vec<&str> = f.labels.split(',').collect();
        assert_eq!(labels, want, "labels of {} in docs/operations.md", f.name);
    }
    assert_eq!(
        rows.len(),
        families.len(),
        "a metric listed twice or not exported"
    );
}
