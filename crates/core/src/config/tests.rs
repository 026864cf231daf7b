use super::values::is_retention_policy;
use super::*;

const SHIPPED: &str = include_str!("../../../../config/cluster.json");

fn problems(text: &str) -> Vec<Problem> {
    Cluster::parse(text, "test.json").unwrap_err().problems
}

fn with(patch: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(SHIPPED).unwrap();
    patch(&mut v);
    v.to_string()
}

fn slot_of<'a>(c: &'a Cluster, name: &str) -> Option<&'a str> {
    c.named(name).unwrap().slot.as_ref().map(|s| s.as_str())
}

/// The shipped config plus standbys at .104, .105, ... (optionally with their own slot).
fn with_standbys(extra: &[Option<&str>]) -> String {
    with(|v| {
        let nodes = v["nodes"].as_array_mut().unwrap();
        for (i, slot) in extra.iter().enumerate() {
            let mut n = serde_json::json!({"name": format!("slave{}", i + 2), "role": "standby", "address": format!("192.168.11.{}", 104 + i)});
            if let Some(s) = slot {
                n["slot"] = (*s).into();
            }
            nodes.insert(2 + i, n);
        }
    })
}

fn fields(ps: &[Problem]) -> Vec<&str> {
    ps.iter().map(|p| p.field.as_str()).collect()
}

#[test]
fn shipped_config_parses_with_the_documented_defaults() {
    let c = Cluster::parse(SHIPPED, "cluster.json").unwrap();
    assert_eq!(c.master.address.to_string(), "192.168.11.101");
    assert_eq!(c.slaves.len(), 1);
    assert_eq!(c.slaves[0].address.to_string(), "192.168.11.102");
    assert_eq!(c.backup.address.to_string(), "192.168.11.103");
    assert_eq!(c.replication.user.as_str(), "streaming_user");
    assert_eq!(slot_of(&c, "slave"), Some("pg_slot_1"));
    assert_eq!(slot_of(&c, "master"), None);
    assert_eq!(c.barman.user.as_str(), "barman");
    assert_eq!(c.barman.streaming_user.as_str(), "barman_streaming_user");
    assert_eq!(c.barman.slot.as_str(), "barman");
    assert_eq!(c.postgresql.major, MajorSpec::Auto);
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let text = r#"{"version":1,"nodes":[
        {"name":"a","role":"primary","address":"10.0.0.1"},
        {"name":"b","role":"standby","address":"10.0.0.2"},
        {"name":"c","role":"backup","address":"10.0.0.3"}]}"#;
    let c = Cluster::parse(text, "t").unwrap();
    assert_eq!(c.master.name.as_str(), "a");
    assert_eq!(c.standbys()[0].role, Role::Slave);
    assert_eq!(c.postgresql.port.get(), 5432);
    assert_eq!(c.postgresql.max_slot_wal_keep_size_mb, 4096);
    assert_eq!(slot_of(&c, "b"), Some("pg_slot_1"));
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let t = with(|v| {
        v["colour"] = "blue".into();
        v["nodes"][1]["ip"] = "1.2.3.4".into();
        v["barman"]["retention"] = "x".into();
    });
    let ps = problems(&t);
    assert_eq!(fields(&ps), ["barman.retention", "colour", "nodes[1].ip"]);
    assert!(ps[0].message.contains("unknown key"));
}

#[test]
fn every_validation_problem_is_reported_and_names_its_field() {
    let t = with(|v| {
        v["nodes"][0]["address"] = "192.168.11.300".into();
        v["nodes"][1]["address"] = "192.168.11.103".into();
        v["nodes"][2]["name"] = "Backup_1".into();
        v["replication"]["slot"] = "Pg-Slot".into();
        v["barman"]["retention_policy"] = "KEEP FOREVER".into();
        v["postgresql"]["max_slot_wal_keep_size_mb"] = (-1).into();
    });
    let ps = problems(&t);
    let f = fields(&ps);
    for want in [
        "nodes[0].address",
        "nodes[2].address",
        "nodes[2].name",
        "replication.slot",
        "barman.retention_policy",
        "postgresql.max_slot_wal_keep_size_mb",
    ] {
        assert!(f.contains(&want), "missing {want} in {ps:#?}");
    }
    let slot = ps.iter().find(|p| p.field == "replication.slot").unwrap();
    assert!(slot.message.contains("\"Pg-Slot\""), "{}", slot.message);
}

#[test]
fn exactly_one_master_and_every_role_present() {
    let t = with(|v| v["nodes"][1]["role"] = "master".into());
    let ps = problems(&t);
    let msgs: Vec<&str> = ps.iter().map(|p| p.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("2 nodes have role master")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("no node has role slave")),
        "{msgs:?}"
    );
}

#[test]
fn duplicate_names_roles_and_slots_are_refused() {
    let t = with(|v| {
        v["nodes"][1]["name"] = "master".into();
        v["barman"]["slot"] = "pg_slot_1".into();
        v["barman"]["user"] = "streaming_user".into();
    });
    let f = problems(&t)
        .into_iter()
        .map(|p| p.field)
        .collect::<Vec<_>>();
    assert!(f.contains(&"nodes[1].name".to_string()), "{f:?}");
    assert!(f.contains(&"barman.slot".to_string()), "{f:?}");
    assert!(f.contains(&"barman.user".to_string()), "{f:?}");
}

#[test]
fn addresses_must_share_the_subnet_and_version_must_be_known() {
    let t = with(|v| {
        v["nodes"][2]["address"] = "10.1.1.1".into();
        v["version"] = 2.into();
    });
    let f = problems(&t)
        .into_iter()
        .map(|p| p.field)
        .collect::<Vec<_>>();
    assert!(
        f.contains(&"nodes".to_string()) && f.contains(&"version".to_string()),
        "{f:?}"
    );
}

#[test]
fn major_is_auto_or_a_supported_number() {
    let ok = with(|v| v["postgresql"]["major"] = 17.into());
    let c = Cluster::parse(&ok, "t").unwrap();
    assert_eq!(
        c.postgresql.major,
        MajorSpec::Fixed(PgMajor::new(17).unwrap())
    );
    for bad in [
        serde_json::json!(9),
        serde_json::json!("latest"),
        serde_json::json!(18),
    ] {
        let t = with(|v| v["postgresql"]["major"] = bad.clone());
        assert_eq!(fields(&problems(&t)), ["postgresql.major"], "{bad}");
    }
}

#[test]
fn wrong_types_and_bad_json_are_errors_not_panics() {
    let t = with(|v| v["postgresql"]["port"] = "5432".into());
    let ps = problems(&t);
    assert_eq!(fields(&ps), ["postgresql.port"]);
    assert!(ps[0].message.contains("must be a whole number"), "{ps:?}");
    assert_eq!(problems("{")[0].field, "(file)");
}

#[test]
fn retention_and_schedule_grammar() {
    assert!(is_retention_policy("REDUNDANCY 2"));
    assert!(is_retention_policy("recovery window of 4 weeks"));
    assert!(!is_retention_policy("RECOVERY WINDOW OF 0 DAYS"));
    assert!(rules::cron_schedule("*/15 2-4 * * 1,3").is_ok());
    assert!(rules::cron_schedule("@daily").is_err());
    assert!(rules::cron_schedule("0 3 * * * rm -rf /").is_err());
}

#[test]
fn any_number_of_standbys_each_with_its_own_slot_in_config_order() {
    let c = Cluster::parse(&with_standbys(&[None, Some("pg_slot_far"), None]), "t").unwrap();
    let names: Vec<&str> = c.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["master", "slave", "slave2", "slave3", "slave4", "backup"]
    );
    let slots: Vec<Option<&str>> = c
        .standbys()
        .iter()
        .map(|n| n.slot.as_ref().map(|s| s.as_str()))
        .collect();
    assert_eq!(
        slots,
        [
            Some("pg_slot_1"),
            Some("pg_slot_2"),
            Some("pg_slot_far"),
            Some("pg_slot_4")
        ]
    );
    assert_eq!(c.with_role(Role::Slave).len(), 4);
    assert_eq!(c.pg_nodes().len(), 5);
    assert_eq!(
        c.named("slave3").unwrap().address.to_string(),
        "192.168.11.105"
    );
    assert!(c.named("nope").is_none());
}

#[test]
fn a_master_may_name_the_slot_it_uses_once_it_follows() {
    let t = with(|v| v["nodes"][0]["slot"] = "pg_slot_master".into());
    let c = Cluster::parse(&t, "t").unwrap();
    assert_eq!(slot_of(&c, "master"), Some("pg_slot_master"));
    assert_eq!(c.master.standby_slot().unwrap().as_str(), "pg_slot_master");
    assert!(c.backup.standby_slot().is_err());
}

#[test]
fn standby_slots_are_unique_valid_and_not_barmans() {
    let ps = problems(&with_standbys(&[Some("pg_slot_1")]));
    assert_eq!(fields(&ps), ["nodes[2].slot"], "{ps:#?}");
    assert!(
        ps[0].message.contains("also the slot of slave"),
        "{}",
        ps[0].message
    );

    let ps = problems(&with_standbys(&[Some("barman")]));
    assert_eq!(fields(&ps), ["nodes[2].slot"], "{ps:#?}");
    assert!(ps[0].message.contains("barman.slot"), "{}", ps[0].message);

    let ps = problems(&with_standbys(&[Some("Slot-2")]));
    assert_eq!(fields(&ps), ["nodes[2].slot"], "{ps:#?}");

    let t = with(|v| v["nodes"][0]["slot"] = "pg_slot_1".into());
    assert_eq!(fields(&problems(&t)), ["replication.slot"]);

    let t = with(|v| v["nodes"][2]["slot"] = "pg_slot_9".into());
    let ps = problems(&t);
    assert_eq!(fields(&ps), ["nodes[2].slot"]);
    assert!(ps[0].message.contains("backup node"), "{}", ps[0].message);
}

#[test]
fn every_standby_needs_a_sender_and_every_node_a_slot() {
    let t = with(|v| {
        v["postgresql"]["max_wal_senders"] = 5.into();
        v["postgresql"]["max_replication_slots"] = 4.into();
    });
    assert!(Cluster::parse(&t, "t").is_ok());
    let mut v: serde_json::Value = serde_json::from_str(&with_standbys(&[None, None])).unwrap();
    v["postgresql"]["max_wal_senders"] = 5.into();
    v["postgresql"]["max_replication_slots"] = 4.into();
    let ps = problems(&v.to_string());
    assert_eq!(
        fields(&ps),
        [
            "postgresql.max_replication_slots",
            "postgresql.max_wal_senders"
        ],
        "{ps:#?}"
    );
    assert!(ps[1].message.contains("3 standby(s)"), "{}", ps[1].message);
}

#[test]
fn at_least_one_standby_is_needed() {
    let t = with(|v| {
        v["nodes"].as_array_mut().unwrap().remove(1);
    });
    let ps = problems(&t);
    assert!(
        ps.iter()
            .any(|p| p.message.contains("no node has role slave")),
        "{ps:#?}"
    );
}

#[test]
fn restore_drill_schedule_defaults_to_daily_and_is_a_cron_schedule() {
    let c = Cluster::parse(SHIPPED, "cluster.json").unwrap();
    assert_eq!(c.barman.restore_drill_schedule, "0 5 * * *");
    let c = Cluster::parse(
        &with(|v| v["barman"]["restore_drill_schedule"] = "30 6 * * 1".into()),
        "t",
    )
    .unwrap();
    assert_eq!(c.barman.restore_drill_schedule, "30 6 * * 1");
    let ps = problems(&with(|v| {
        v["barman"]["restore_drill_schedule"] = "0 5 * * * root rm -rf /".into()
    }));
    assert_eq!(fields(&ps), ["barman.restore_drill_schedule"]);
}

#[test]
fn incremental_schedule_is_off_by_default_or_a_cron_schedule() {
    let c = Cluster::parse(SHIPPED, "cluster.json").unwrap();
    assert_eq!(c.barman.incremental_schedule, "");
    let c = Cluster::parse(
        &with(|v| v["barman"]["incremental_schedule"] = "0 3 * * 1-6".into()),
        "t",
    )
    .unwrap();
    assert_eq!(c.barman.incremental_schedule, "0 3 * * 1-6");
    let ps = problems(&with(|v| {
        v["barman"]["incremental_schedule"] = "daily".into()
    }));
    assert_eq!(fields(&ps), ["barman.incremental_schedule"]);
}

#[test]
fn zero_loss_mode_lists_every_postgresql_node() {
    let c = Cluster::parse(SHIPPED, "t").unwrap();
    assert_eq!(c.synchronous_standby_names(), None);
    let t = with(|v| v["replication"]["synchronous"] = true.into());
    let c = Cluster::parse(&t, "t").unwrap();
    assert_eq!(
        c.synchronous_standby_names().unwrap(),
        r#"ANY 1 ("master", "slave")"#
    );
    let t = with(|v| v["replication"]["synchronous"] = "yes".into());
    assert_eq!(fields(&problems(&t)), ["replication.synchronous"]);
}

/// The field names serde accepts for `T`, read from its own "unknown field" error (the derive
/// lists every field there): the parser's key table must not drift from the typed model.
fn serde_fields<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let probe = serde_json::json!({ "\u{1}not a field": 0 });
    let err = serde_json::from_value::<T>(probe)
        .err()
        .expect("probe refused")
        .to_string();
    let listed = err
        .split_once("expected")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("unexpected serde error: {err}"));
    listed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn accepted_keys_are_exactly_the_fields_of_the_typed_model() {
    use super::raw::*;
    let mut from_serde: Vec<String> = Vec::new();
    let mut add = |object: &str, fields: Vec<String>| {
        for f in fields {
            from_serde.push(if object.is_empty() {
                f
            } else {
                format!("{object}.{f}")
            });
        }
    };
    add("", serde_fields::<RawConfig>());
    add("nodes[]", serde_fields::<RawNode>());
    add("network", serde_fields::<RawNetwork>());
    add("postgresql", serde_fields::<RawPostgres>());
    add("replication", serde_fields::<RawReplication>());
    add("barman", serde_fields::<RawBarman>());
    add(
        "monitoring",
        serde_fields::<super::monitoring::RawMonitoring>(),
    );
    add(
        "monitoring.email",
        serde_fields::<super::monitoring::Email>(),
    );
    add("clients[]", serde_fields::<super::clients::RawClient>());
    let mut accepted = accepted_keys();
    accepted.sort();
    from_serde.sort();
    assert_eq!(accepted, from_serde);
    assert!(accepted.contains(&"postgresql.max_slot_wal_keep_size_mb".to_string()));
    assert!(accepted.contains(&"nodes[].slot".to_string()));
}

#[test]
fn clients_parse_and_give_connection_strings_that_follow_the_primary() {
    let t = with(|v| {
        v["clients"] = serde_json::json!([
            {"user": "app", "database": "appdb", "hosts": ["192.168.11.1", "10.0.0.7"]}
        ])
    });
    let c = Cluster::parse(&t, "t").unwrap();
    assert_eq!(c.clients.len(), 1);
    assert_eq!(c.clients[0].hosts.len(), 2);
    assert!(c.secret_names().contains(&"app"));
    assert!(c.later_secret_names().contains(&"app"));
    let conn = c.client_connect("/etc/ssl/pgnode/ca.crt");
    assert_eq!(
        conn[0].read_write,
        "postgresql://app@192.168.11.101:5432,192.168.11.102:5432/appdb?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/ssl/pgnode/ca.crt&connect_timeout=5"
    );
    assert!(conn[0]
        .read_only
        .contains("target_session_attrs=prefer-standby"));
    assert_eq!(c.normalized()["clients"][0]["database"], "appdb");
    // None by default: no role, no secret, no connection string.
    let plain = Cluster::parse(SHIPPED, "cluster.json").unwrap();
    assert!(plain.clients.is_empty());
    assert!(plain.client_connect("x").is_empty());
}

#[test]
fn bad_clients_are_refused_naming_each_field() {
    // The file's shape first: unknown keys, wrong types.
    let t = with(|v| {
        v["clients"] = serde_json::json!([
            {"user": "a", "database": "a", "hosts": ["10.0.0.3", 7], "password": "x"},
            "app"
        ])
    });
    assert_eq!(
        fields(&problems(&t)),
        ["clients[0].password", "clients[0].hosts[1]", "clients[1]"]
    );
    // Then the values, every problem at once.
    let t = with(|v| {
        v["clients"] = serde_json::json!([
            {"user": "streaming_user", "database": "template1", "hosts": []},
            {"user": "App", "database": "ok", "hosts": ["10.0.0.1/24", "127.0.0.1", "10.0.0.2", "10.0.0.2"]},
            {"user": "dup", "database": "a", "hosts": ["10.0.0.3"]},
            {"user": "dup", "database": "b", "hosts": ["10.0.0.4"]},
            {"user": "pgnode_monitor", "database": "c", "hosts": ["10.0.0.5"]}
        ])
    });
    let ps = problems(&t);
    let mut f = fields(&ps);
    f.sort();
    assert_eq!(
        f,
        [
            "clients[0].database",
            "clients[0].hosts",
            "clients[0].user",
            "clients[1].hosts[0]",
            "clients[1].hosts[1]",
            "clients[1].hosts[3]",
            "clients[1].user",
            "clients[3].user",
            "clients[4].user",
        ],
        "{ps:?}"
    );
    let msg = |field: &str| {
        ps.iter()
            .find(|p| p.field == field)
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    assert!(
        msg("clients[0].user").contains("a role pgnode uses"),
        "{ps:?}"
    );
    assert!(msg("clients[1].hosts[0]").contains("no prefix"), "{ps:?}");
    assert!(msg("clients[1].hosts[3]").contains("twice"), "{ps:?}");
    assert!(msg("clients[3].user").contains("another client"), "{ps:?}");
    // pg_hba's keywords would open more than the client's own database to it.
    for (user, db) in [
        ("all", "app"),
        ("app", "all"),
        ("app", "replication"),
        ("app", "sameuser"),
    ] {
        let t = with(|v| {
            v["clients"] =
                serde_json::json!([{"user": user, "database": db, "hosts": ["10.0.0.3"]}])
        });
        let ps = problems(&t);
        assert_eq!(ps.len(), 1, "{user}/{db}: {ps:?}");
        assert!(ps[0].message.contains("pg_hba"), "{ps:?}");
    }
}
