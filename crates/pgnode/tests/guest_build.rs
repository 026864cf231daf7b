//! The in-guest build (a host without Rust: the first Vagrant guest compiles pgnode under
//! emulation) stays light: no crate in the lock that makes a build script run a C compiler.
//! See the note on pest above `[profile.guest]` in the workspace's Cargo.toml.

/// Package names in the workspace's Cargo.lock.
fn locked_packages() -> Vec<String> {
    let lock = include_str!("../../../Cargo.lock");
    lock.lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect()
}

#[test]
fn no_c_compiling_build_dependencies_in_the_lock() {
    let names = locked_packages();
    assert!(
        names.iter().any(|n| n == "handlebars"),
        "the lock was not read: {names:?}"
    );
    let heavy: Vec<&String> = names
        .iter()
        .filter(|n| ["psm", "stacker", "cc", "pest_stack_guard"].contains(&n.as_str()))
        .collect();
    assert!(
        heavy.is_empty(),
        "Cargo.lock gained {heavy:?} (pest >= 2.9.3?): they roughly add a quarter to a guest \
         build under emulation; hold pest at 2.9.2: `cargo update -p NAME --precise 2.9.2` for pest_derive, pest_generator, pest_meta, pest"
    );
}
