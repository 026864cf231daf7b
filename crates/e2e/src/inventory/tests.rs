use super::*;

const LAB_INVENTORY: &str = "[master]\n192.168.11.101\n\n[slave]\n192.168.11.102\n\n[backup]\n192.168.11.103\n\n\
[pgnode:children]\nmaster\nslave\nbackup\n\n[pgnode:vars]\nansible_user=root\n\
ansible_ssh_private_key_file=/var/lib/pgnode-lab/ssh/id_ed25519\n\
ansible_ssh_common_args='-o UserKnownHostsFile=/tmp/w/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes'\n";

fn cluster() -> config::Cluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster.json");
    config::Cluster::load(&path).unwrap()
}

#[test]
fn parses_what_ansible_lab_writes() {
    let inv = Inventory::parse(LAB_INVENTORY);
    assert_eq!(inv.groups["master"], ["192.168.11.101"]);
    assert_eq!(inv.children["pgnode"], ["master", "slave", "backup"]);
    let v = inv.vars("192.168.11.102");
    assert_eq!(v["ansible_user"], "root");
    assert_eq!(v["ansible_ssh_common_args"], "-o UserKnownHostsFile=/tmp/w/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes");
}

#[test]
fn the_example_inventory_names_every_node_of_the_example_config() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../provision/ansible/inventory.example.ini");
    let ssh = Ssh::from_inventory(&path, &cluster(), None).unwrap();
    assert_eq!(
        ssh.hosts.keys().collect::<Vec<_>>(),
        ["backup", "master", "slave"]
    );
    assert_eq!(ssh.hosts["slave"].user, "root");
    assert_eq!(ssh.hosts["slave"].key, None);
}

#[test]
fn host_vars_override_group_vars() {
    let inv = Inventory::parse("[all:vars]\nansible_user=admin\n[master]\nm ansible_host=10.0.0.1 ansible_user=deploy\n[slave]\ns\n");
    assert_eq!(inv.vars("m")["ansible_user"], "deploy");
    assert_eq!(inv.vars("m")["ansible_host"], "10.0.0.1");
    assert_eq!(inv.vars("s")["ansible_user"], "admin");
}

#[test]
fn ssh_command_line_quotes_hostile_argv_once() {
    let inv = Inventory::parse(LAB_INVENTORY);
    let mut hosts = BTreeMap::new();
    hosts.insert(
        "master".to_string(),
        ssh_host("192.168.11.101", &inv.vars("192.168.11.101")),
    );
    let ssh = Ssh {
        hosts,
        netns: Some("/run/netns/pgnode-lab-e7".into()),
        layout: GuestLayout::ansible(),
    };
    let cmd = Command::new(&["psql", "-c", "select 'x'; -- $(id)\nselect \"y\""]);
    let l = ssh.exec_local("master", &cmd).unwrap();
    let tail = &l.argv[l.argv.len() - 3..];
    assert_eq!(tail[0], "root@192.168.11.101");
    assert_eq!(tail[1], "--");
    assert_eq!(
        tail[2],
        "cd / && psql -c 'select '\\''x'\\''; -- $(id)\nselect \"y\"'"
    );
    assert_eq!(
        &l.argv[..3],
        ["nsenter", "--net=/run/netns/pgnode-lab-e7", "--"]
    );
    assert!(l
        .argv
        .windows(2)
        .any(|w| w == ["-i", "/var/lib/pgnode-lab/ssh/id_ed25519"]));
    assert!(l
        .argv
        .windows(2)
        .any(|w| w == ["-o", "UserKnownHostsFile=/tmp/w/known_hosts"]));
    assert!(ssh.exec_local("nope", &cmd).is_err());
}

#[test]
fn non_root_users_go_through_sudo() {
    let mut vars = BTreeMap::new();
    vars.insert("ansible_user".to_string(), "vagrant".to_string());
    let ssh = Ssh {
        hosts: [("slave".to_string(), ssh_host("10.0.0.2", &vars))].into(),
        netns: None,
        layout: GuestLayout::ansible(),
    };
    let l = ssh
        .exec_local("slave", &Command::new(&["cat", "a b"]))
        .unwrap();
    assert_eq!(l.argv.last().unwrap(), "cd / && sudo -n -- cat 'a b'");
    assert_eq!(l.argv[0], "ssh");
}

#[test]
fn split_words_honours_quotes() {
    assert_eq!(
        split_words("-o A=1  -o 'B=two words' \"\" x"),
        ["-o", "A=1", "-o", "B=two words", "", "x"]
    );
}
