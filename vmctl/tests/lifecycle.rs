//! Bringing clusters up and down with the stand-in VMM (tests/common/stand-in-vmm.sh) in user
//! networking mode: idempotence, change reports, stale pid files after `kill -9`, the lock,
//! destroy's --yes, export. What the VMM itself does is tested once it has networking.

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
fn up_is_idempotent_and_reports_a_changed_file() {
    let env = Env::new();
    let file = user_cluster(&env, "idem", "  - { name: core, count: 2 }\n");
    let out = env.ok(&["up", "idem", "--no-wait"]);
    assert!(
        out.contains("core-1: started") && out.contains("core-2: started"),
        "{out}"
    );
    let (p1, p2) = (
        env.pid("idem", "core-1").unwrap(),
        env.pid("idem", "core-2").unwrap(),
    );
    assert!(alive(p1) && alive(p2));

    // What the VMM was given.
    let a = args_of(&env, "idem", "core-1");
    let disks = after(&a, "--disk");
    assert_eq!(disks.len(), 2, "{a:?}");
    assert!(disks[0].contains("readonly=on,serial=usr"), "{disks:?}");
    assert!(
        disks[1].ends_with("core-1/root.img,serial=root"),
        "{disks:?}"
    );
    let net = after(&a, "--net")[0];
    assert!(
        net.starts_with("user,mac=") && net.contains(",hostfwd=tcp:127.0.0.1:"),
        "{net}"
    );
    let cmdline = after(&a, "--cmdline")[0];
    assert!(
        cmdline.contains("mount.usr=/dev/vda mount.usrfstype=squashfs"),
        "{cmdline}"
    );
    assert!(cmdline.ends_with("flatcar.autologin"), "{cmdline}");
    assert!(after(&a, "--share")[0].ends_with("core-1/config-2,tag=config-2,readonly=on"));
    // The two nodes forward different host ports.
    let net2 = after(&args_of(&env, "idem", "core-2"), "--net")[0].to_string();
    assert_ne!(net, net2);

    // Again: nothing restarted.
    let out = env.ok(&["up", "idem", "--no-wait"]);
    assert!(
        out.contains("core-1: running\n") && out.contains("core-2: running\n"),
        "{out}"
    );
    assert_eq!(env.pid("idem", "core-1"), Some(p1));
    assert_eq!(env.pid("idem", "core-2"), Some(p2));

    // A changed file is reported for the running nodes; a new node is started alone.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("memory: 256", "memory: 512") + "  - { name: extra }\n",
    )
    .unwrap();
    let out = env.ok(&["up", "idem", "--no-wait"]);
    assert!(
        out.contains("core-1: running, but the file changed (memory)"),
        "{out}"
    );
    assert!(out.contains("extra: started"), "{out}");
    assert_eq!(env.pid("idem", "core-1"), Some(p1));

    let status = env.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let states: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 3);
    assert!(
        states.iter().all(|s| s.starts_with("running")),
        "{states:?}"
    );

    for n in ["core-1", "core-2", "extra"] {
        env.wait_started("idem", n);
    }
    let out = env.ok(&["down"]);
    assert_eq!(out.matches(": stopped").count(), 3, "{out}");
    assert!(!alive(p1) && !alive(p2));
    assert!(env.pid("idem", "core-1").is_none());
    let console =
        std::fs::read_to_string(env.node_dir("idem", "core-1").join("console.log")).unwrap();
    assert!(
        console.contains("stand-in: powered off"),
        "a graceful stop: {console}"
    );
}

#[test]
fn down_after_kill_9_cleans_up_and_up_restarts() {
    let env = Env::new();
    user_cluster(&env, "k9", "  - { name: a }\n  - { name: b }\n");
    env.ok(&["up", "k9", "--no-wait"]);
    env.wait_started("k9", "a");
    env.wait_started("k9", "b");
    let pid = env.pid("k9", "a").unwrap();
    let dir = env.node_dir("k9", "a");
    assert!(dir.join("api.sock").exists());
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The VMM left its pid file and socket behind.
    assert!(dir.join("vmm.pid").exists() && dir.join("api.sock").exists());

    let status = env.ok(&["status", "k9"]);
    assert!(status.contains("VMM had died"), "{status}");
    assert!(!dir.join("vmm.pid").exists() && !dir.join("api.sock").exists());

    // up starts the dead node again and leaves the other alone.
    let b = env.pid("k9", "b").unwrap();
    let out = env.ok(&["up", "k9", "--no-wait"]);
    assert!(
        out.contains("a: started") && out.contains("b: running"),
        "{out}"
    );
    assert_eq!(env.pid("k9", "b"), Some(b));
    let new_a = env.pid("k9", "a").unwrap();
    env.wait_started("k9", "a");
    assert_ne!(new_a, pid);

    // kill -9 again, then down: the stale files are found and removed, the other node stopped.
    Command::new("kill")
        .args(["-9", &new_a.to_string()])
        .status()
        .unwrap();
    while alive(new_a) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.ok(&["down", "-c", "k9"]);
    assert!(
        out.contains("a: its VMM had died; removed the stale pid file and socket"),
        "{out}"
    );
    assert!(out.contains("b: stopped"), "{out}");
    assert!(!dir.join("vmm.pid").exists() && !dir.join("api.sock").exists());
    assert!(!alive(b));
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
    // The API socket is there but nothing answers on it: vmctl falls back to SIGTERM, then KILL.
    let t = Instant::now();
    let out = env.ok(&["down", "a", "--timeout", "1"]);
    assert!(
        out.contains("a: did not power off within 1s; stopped hard"),
        "{out}"
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(!alive(pid));
}

#[test]
fn the_lock_makes_a_second_vmctl_wait_or_fail_clearly() {
    let env = Env::new();
    user_cluster(&env, "lk", "  - { name: a }\n");
    env.ok(&["up", "lk", "--no-wait"]);
    let lock = env.home.join("clusters/lk/lock");
    // util-linux flock(1) holds the same lock vmctl takes.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let t = Instant::now();
    let err = env.fails(&["--lock-timeout", "1", "down", "-c", "lk"]);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(err.contains("cluster lk is busy"), "{err}");
    assert!(env.pid("lk", "a").is_some(), "nothing was stopped");

    // With a longer timeout the second one waits for the first and then does its work.
    let out = env
        .vmctl()
        .args(["--lock-timeout", "20", "down", "-c", "lk"])
        .output()
        .unwrap();
    let waited = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("waiting for another process to finish with cluster lk")
    );
    assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    holder.wait().unwrap();
    assert!(env.pid("lk", "a").is_none());
}

#[test]
fn destroy_needs_yes() {
    let env = Env::new();
    user_cluster(&env, "gone", "  - { name: a }\n");
    env.ok(&["up", "gone", "--no-wait"]);
    let pid = env.pid("gone", "a").unwrap();
    let err = env.fails(&["destroy", "gone"]);
    assert!(err.contains("run again with --yes"), "{err}");
    assert!(alive(pid));
    assert!(env.node_dir("gone", "a").join("root.img").exists());

    let out = env.ok(&["destroy", "gone", "--yes"]);
    assert!(out.contains("destroyed cluster gone"), "{out}");
    assert!(!alive(pid));
    assert!(!env.home.join("clusters/gone").exists());
    // The shared image store stays for other clusters.
    assert!(
        std::fs::read_dir(env.home.join("images/blobs"))
            .unwrap()
            .count()
            >= 2
    );
    let err = env.fails(&["status", "gone"]);
    assert!(err.contains("no cluster \"gone\""), "{err}");
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
