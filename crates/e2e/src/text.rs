//! Small text helpers for evidence lines and command display: POSIX shell quoting, tails,
//! squeezed spaces, "a, b and c" lists.

/// Quotes one word for a POSIX shell: as is when it is made of safe characters only, otherwise
/// in single quotes, with each `'` written as `'\''`. Newlines survive inside single quotes.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:,@%+".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A whole argv as one shell command line (each word quoted).
pub fn quote_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last line of `text` (empty when there is none).
pub fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// Every run of spaces made one space (as `sed 's/  */ /g'` did in the bash suite).
pub fn squeeze(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

/// Each line followed by one space, joined: the bash suite's `tr '\n' ' '`.
pub fn flat(text: &str) -> String {
    text.lines().map(|l| format!("{l} ")).collect()
}

/// "a", "a and b", "a, b and c".
pub fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_leaves_plain_words_alone() {
        assert_eq!(quote("runuser"), "runuser");
        assert_eq!(quote("-XAtq"), "-XAtq");
        assert_eq!(quote("/var/lib/barman"), "/var/lib/barman");
        // `=` is quoted: a leading `A=B` word would be an assignment, not a command.
        assert_eq!(quote("ON_ERROR_STOP=1"), "'ON_ERROR_STOP=1'");
    }

    #[test]
    fn quote_hostile_words() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("a;rm -rf /"), "'a;rm -rf /'");
        assert_eq!(quote("line1\nline2"), "'line1\nline2'");
        assert_eq!(quote("`id` $(id) \"x\" \\"), "'`id` $(id) \"x\" \\'");
    }

    /// The quoted line, parsed by a real shell, gives back exactly the original words.
    #[test]
    fn quote_round_trips_through_sh() {
        let words = [
            "plain", "", "a b", "it's", "$HOME", "x;y", "l1\nl2", "'", "\"q\"", "*", "~", "A=B",
            "a\\b", "-n",
        ];
        let script = format!("printf '%s\\0' {}", quote_argv(&words));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(String::from)
            .collect();
        assert_eq!(got, words);
    }

    #[test]
    fn helpers() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(last_line("x\nrecap: y\n"), "recap: y");
        assert_eq!(squeeze("  FAIL   standby  x"), " FAIL standby x");
        assert_eq!(flat("a|t\nb|t\n"), "a|t b|t ");
        assert_eq!(and_list(&["m"]), "m");
        assert_eq!(and_list(&["m", "s"]), "m and s");
        assert_eq!(and_list(&["m", "s", "b"]), "m, s and b");
    }
}
