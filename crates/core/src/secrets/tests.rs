use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgnode-secrets-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn passwords_are_random_and_safe() {
    let a = random_password(Path::new("x")).unwrap();
    let b = random_password(Path::new("x")).unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn first_writer_wins_and_file_is_0600() {
    if which::which("ssh-keygen").is_err() || which::which("openssl").is_err() {
        eprintln!("skipping: ssh-keygen or openssl not installed");
        return;
    }
    let d = dir("race");
    let p = d.join("secrets.json");
    let users = ["streaming_user", "barman"];
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || load_or_create(&p, &users, &ADDED_LATER, &nodes()).unwrap())
        })
        .collect();
    let results: Vec<(Secrets, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    assert!(
        results.windows(2).all(|w| w[0].0 == w[1].0),
        "different secret sets"
    );
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "temp files left");
    let s = &results[0].0;
    assert!(s.archive_ssh_key.public.starts_with("ssh-ed25519 "));
    assert!(!format!("{s:?}").contains(&s.passwords["barman"]));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(&p, &users).unwrap_err().to_string();
    assert!(e.contains("must be 0600"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = load(&p, &["someone_else"]).unwrap_err().to_string();
    assert!(e.contains("no password for role \"someone_else\""), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

fn nodes() -> Vec<(String, Ipv4Addr)> {
    vec![("master".into(), Ipv4Addr::new(10, 0, 0, 1))]
}

#[test]
fn a_file_without_tls_gets_it_once_and_rotation_replaces_it() {
    if which::which("ssh-keygen").is_err() || which::which("openssl").is_err() {
        eprintln!("skipping: ssh-keygen or openssl not installed");
        return;
    }
    let d = dir("upgrade");
    let p = d.join("secrets.json");
    let users = ["barman"];
    let (mut s, _) = load_or_create(&p, &users, &ADDED_LATER, &nodes()).unwrap();
    let before = s.clone();
    s.tls = None;
    std::fs::write(&p, serde_json::to_string(&s).unwrap()).unwrap();
    let (up, changed) = load_or_create(&p, &users, &ADDED_LATER, &nodes()).unwrap();
    assert!(changed && up.tls.is_some());
    assert_eq!(up.passwords, before.passwords, "passwords must survive");
    let (again, changed) = load_or_create(&p, &users, &ADDED_LATER, &nodes()).unwrap();
    assert!(!changed && again == up);
    let mut more = nodes();
    more.push(("slave2".into(), Ipv4Addr::new(10, 0, 0, 4)));
    let (grown, changed) = load_or_create(&p, &users, &ADDED_LATER, &more).unwrap();
    let (t0, t1) = (up.tls.as_ref().unwrap(), grown.tls.as_ref().unwrap());
    assert!(changed && t1.missing(&more).is_none());
    assert!(t1.ca == t0.ca, "a node added to the config keeps the CA");
    assert!(t1.nodes["master"] == t0.nodes["master"]);
    let (rotated, _) = replace_tls(&p, &users, &ADDED_LATER, &nodes(), true).unwrap();
    assert_ne!(rotated.tls, up.tls);
    assert_eq!(load(&p, &users).unwrap().unwrap(), rotated);
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn passwords_added_later_are_generated_into_an_older_file_and_others_are_not() {
    if which::which("ssh-keygen").is_err() || which::which("openssl").is_err() {
        eprintln!("skipping: ssh-keygen or openssl not installed");
        return;
    }
    let d = dir("added-later");
    let p = d.join("secrets.json");
    let (old, _) = load_or_create(&p, &["barman"], &ADDED_LATER, &nodes()).unwrap();
    let users = ["barman", ADDED_LATER[0], ADDED_LATER[1], ADDED_LATER[2]];
    assert!(load(&p, &users).is_err(), "strict load must miss them");
    let (new, changed) = load_or_create(&p, &users, &ADDED_LATER, &nodes()).unwrap();
    assert!(changed);
    assert_eq!(new.passwords["barman"], old.passwords["barman"]);
    assert!(new.tls == old.tls, "the TLS material must survive");
    assert!(new.archive_ssh_key == old.archive_ssh_key);
    for u in ADDED_LATER {
        assert_eq!(new.passwords[u].len(), 32, "{u}");
    }
    assert_eq!(load(&p, &users).unwrap().unwrap(), new);
    // A role's password that is not one added later is still refused when missing.
    let e = load_any(&p, &["someone"], &ADDED_LATER)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no password for role \"someone\""), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}
