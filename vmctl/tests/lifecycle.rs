//! What needs no boot, with the stand-in VMM (tests/common/stand-in-vmm.sh) in user networking
//! mode: the files a node gets (root disk, config drive, Ignition, first boot), export of a
//! stopped node, a VMM that answers nothing and ignores SIGTERM (SIGKILL), and --systemd
//! without systemd. The real VMM's lifecycle is in vm_lifecycle.rs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, alive, user_cluster};

fn args_of(env: &Env, cluster: &str, node: &str) -> Vec<String> {
    std::fs::read_to_string(env.node_dir(cluster, node).join("vmm.args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn a_guest_that_ignores_power_off_is_stopped_hard() {
    let env = Env::new();
    user_cluster(&env, "hard", "  - { name: a }\n");
    let out = env
        .vmctl()
        .args(["up", "hard", "--no-wait"])
        .env("STANDIN_IGNORE_TERM", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid = env.pid("hard", "a").unwrap();
    env.wait_started("hard", "a");
    // The API socket is there but nothing answers on it: vmctl falls back to SIGTERM, which
    // this VMM ignores; power-off cannot be asked for either: SIGKILL.
    let t = Instant::now();
    let out = env.ok(&["down", "a", "--timeout", "1"]);
    assert!(
        out.contains("a: its VMM did not stop; killed it (SIGKILL)"),
        "{out}"
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(!alive(pid));
}

#[test]
fn export_a_stopped_nodes_root_disk() {
    let env = Env::new();
    user_cluster(&env, "ex", "  - { name: a }\n");
    env.ok(&["up", "ex", "--no-wait"]);
    let out_file = env.work.join("a.img.gz");
    let err = env.fails(&["export", "a", "-o", out_file.to_str().unwrap()]);
    assert!(err.contains("is running"), "{err}");
    assert!(!out_file.exists());
    env.ok(&["down"]);
    let out = env.ok(&["export", "ex:a", "-o", out_file.to_str().unwrap()]);
    assert!(out.contains("exported a's root disk"), "{out}");
    // gzip's own decoder gives back the disk byte for byte.
    let root = env.node_dir("ex", "a").join("root.img");
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "gzip -dc {} | cmp - {}",
            out_file.display(),
            root.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let err = env.fails(&["export", "a", "-o", out_file.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn node_files_root_disk_and_config_drive() {
    let env = Env::new();
    let key = env.work.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "t@vmctl", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        env.work.join("user-data.yaml"),
        "#cloud-config\nhostname: x\n",
    )
    .unwrap();
    std::fs::write(
        env.work.join("n.ign"),
        "{\"ignition\":{\"version\":\"3.3.0\"}}",
    )
    .unwrap();
    user_cluster(
        &env,
        "files",
        "  - { name: a, ssh_keys: [id_ed25519.pub], user_data: user-data.yaml }\n  - { name: b, ignition: n.ign, root_size: 2G }\n",
    );
    env.ok(&["up", "files", "--no-wait"]);
    let a = env.node_dir("files", "a");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.join("config-2/openstack/latest/meta_data.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["hostname"], "a");
    let pubkey = std::fs::read_to_string(env.work.join("id_ed25519.pub")).unwrap();
    assert!(
        meta["public_keys"]
            .as_object()
            .unwrap()
            .values()
            .any(|k| k.as_str().unwrap().trim() == pubkey.trim())
    );
    assert_eq!(
        std::fs::read_to_string(a.join("config-2/openstack/latest/user_data")).unwrap(),
        "#cloud-config\nhostname: x\n"
    );
    assert!(after(&args_of(&env, "files", "a"), "--ignition").is_empty());

    let b = env.node_dir("files", "b");
    let ign = after(&args_of(&env, "files", "b"), "--ignition")[0].to_string();
    assert_eq!(
        std::fs::read_to_string(&ign).unwrap(),
        "{\"ignition\":{\"version\":\"3.3.0\"}}"
    );
    // A sparse 2 GiB root: dumpe2fs reads it as ext4 labelled ROOT; du shows it costs little.
    let dump = Command::new("dumpe2fs")
        .arg("-h")
        .arg(b.join("root.img"))
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("Filesystem volume name:   ROOT"), "{dump}");
    assert_eq!(
        std::fs::metadata(b.join("root.img")).unwrap().len(),
        2 << 30
    );
    let du = Command::new("du")
        .arg("-k")
        .arg(b.join("root.img"))
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        kib < 64 * 1024,
        "a sparse root costs far less than 2 GiB: {kib} KiB"
    );
    // First boot of a fresh disk is flagged for Flatcar; the next start is not a first boot.
    assert!(after(&args_of(&env, "files", "b"), "--cmdline")[0].contains("flatcar.first_boot=1"));
    env.ok(&["down", "b"]);
    env.ok(&["up", "files", "--no-wait"]);
    assert!(!after(&args_of(&env, "files", "b"), "--cmdline")[0].contains("first_boot"));
    env.ok(&["down"]);
}

#[test]
fn systemd_mode_without_systemd_says_so() {
    let env = Env::new();
    user_cluster(&env, "sd", "  - { name: a }\n");
    if std::path::Path::new("/run/systemd/system").is_dir() {
        eprintln!(
            "SKIP: systemd runs this machine; the missing-systemd message cannot be shown here"
        );
        return;
    }
    let err = env.fails(&["up", "sd", "--systemd"]);
    assert!(
        err.contains("--systemd needs systemd as the init system"),
        "{err}"
    );
    assert!(!env.home.join("clusters").exists());
}
