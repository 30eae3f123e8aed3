//! Bringing clusters up and down with the real VMM and the freestanding test guest (it boots in
//! milliseconds), in user networking mode (passt) inside a network namespace each test makes:
//! idempotence and change reports, the boot marker seen through the VMM's API, the power button
//! (`down`), a guest that ignores it (API power-off, or the VMM's own shutdown timeout),
//! `kill -9` of a VMM, the lock, and destroy's --yes.
//!
//! The guest's `button` mode waits for the ACPI power button and then powers off;
//! `ignorebutton` leaves it pressed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Netns, alive, cmdline_of, flag_values, guest_cluster, wait_for_text};

const BOOTED: &str = "guest: waiting for the power button";

fn console(env: &Env, cluster: &str, node: &str) -> String {
    std::fs::read_to_string(env.node_dir(cluster, node).join("console.log")).unwrap_or_default()
}

fn wait_booted(env: &Env, cluster: &str, node: &str) {
    wait_for_text(
        &env.node_dir(cluster, node).join("console.log"),
        BOOTED,
        Duration::from_secs(60),
    );
}

/// One request on the node's API socket, read without vmctl: the VMM's own answer.
fn api(env: &Env, cluster: &str, node: &str, command: &str) -> serde_json::Value {
    let s = UnixStream::connect(env.node_dir(cluster, node).join("api.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (&s).write_all(format!("{{\"command\":\"{command}\"}}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// passt processes whose parent is `vmm`.
fn passt_of(vmm: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            head.contains("(passt")
                && tail.split_whitespace().nth(1) == Some(vmm.to_string().as_str())
        })
        .collect()
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn up_is_idempotent_reports_a_changed_file_and_down_presses_the_button() {
    let ns = Netns::for_passt("idem");
    let env = Env::real(&ns);
    let file = guest_cluster(&env, "idem", "button", "  - { name: core, count: 2 }\n");
    let out = env.ok(&["up", "idem"]);
    for n in ["core-1", "core-2"] {
        assert!(out.contains(&format!("{n}: started")), "{out}");
        assert!(
            out.contains(&format!(
                "{n}: booted (console showed \"waiting for the power button\")"
            )),
            "{out}"
        );
    }
    let (p1, p2) = (
        env.pid("idem", "core-1").unwrap(),
        env.pid("idem", "core-2").unwrap(),
    );
    assert!(alive(p1) && alive(p2));
    assert_eq!(passt_of(p1).len(), 1, "the VMM runs passt for --net user");

    // What the VMM runs with, from /proc.
    let a = cmdline_of(p1);
    let disks = flag_values(&a, "--disk");
    assert_eq!(disks.len(), 2, "{a:?}");
    assert!(disks[0].ends_with(",readonly=on,serial=usr"), "{disks:?}");
    assert!(
        disks[1].ends_with("core-1/root.img,serial=root"),
        "{disks:?}"
    );
    let net = flag_values(&a, "--net")[0];
    assert!(
        net.starts_with("user,mac=") && net.contains(",hostfwd=tcp:127.0.0.1:"),
        "{net}"
    );
    let cmdline = flag_values(&a, "--cmdline")[0];
    assert!(
        cmdline.starts_with("console=ttyS0 mount.usr=/dev/vda mount.usrfstype=squashfs"),
        "{cmdline}"
    );
    assert!(cmdline.ends_with(" button"), "{cmdline}");
    assert!(flag_values(&a, "--share")[0].ends_with("core-1/config-2,tag=config-2,readonly=on"));
    assert_eq!(
        flag_values(&a, "--boot-marker"),
        ["waiting for the power button"]
    );
    let net2 = flag_values(&cmdline_of(p2), "--net")[0].to_string();
    assert_ne!(net, net2, "the two nodes forward different host ports");
    // The VMM's own view, through its API socket.
    let st = api(&env, "idem", "core-1", "status");
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["boot_marker"]["seen"], true, "{st}");
    assert_eq!(st["memory_mib"], 64, "{st}");

    // Again: nothing restarted.
    let out = env.ok(&["up", "idem"]);
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
        text.replace("memory: 64", "memory: 96") + "  - { name: extra }\n",
    )
    .unwrap();
    let out = env.ok(&["up", "idem"]);
    assert!(
        out.contains("core-1: running, but the file changed (memory)"),
        "{out}"
    );
    assert!(out.contains("extra: started"), "{out}");
    assert_eq!(env.pid("idem", "core-1"), Some(p1));
    let extra = env.pid("idem", "extra").unwrap();
    assert_eq!(flag_values(&cmdline_of(extra), "--memory"), ["96"]);

    let v: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["state"], "running", "{n}");
        assert_eq!(n["vmm"]["boot_marker"]["seen"], true, "{n}");
    }

    // down presses each power button; the guests power off (the VMM exits 0).
    let out = env.ok(&["down"]);
    assert_eq!(out.matches(": powered off").count(), 3, "{out}");
    for (n, pid) in [("core-1", p1), ("core-2", p2), ("extra", extra)] {
        assert!(!alive(pid), "{n}");
        assert!(
            console(&env, "idem", n).contains("guest: power button pressed"),
            "{n}: the guest saw the button: {}",
            console(&env, "idem", n)
        );
        let dir = env.node_dir("idem", n);
        assert!(!dir.join("vmm.pid").exists() && !dir.join("api.sock").exists());
    }
    let status = env.ok(&["status"]);
    assert_eq!(status.matches(" stopped ").count(), 3, "{status}");
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn down_after_kill_9_cleans_up_and_up_restarts() {
    let ns = Netns::for_passt("k9");
    let env = Env::real(&ns);
    guest_cluster(&env, "k9", "button", "  - { name: a }\n  - { name: b }\n");
    env.ok(&["up", "k9", "--no-wait"]);
    wait_booted(&env, "k9", "a");
    wait_booted(&env, "k9", "b");
    let pid = env.pid("k9", "a").unwrap();
    let passt = passt_of(pid);
    assert_eq!(passt.len(), 1);
    let dir = env.node_dir("k9", "a");
    assert!(dir.join("api.sock").exists());
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_dead(pid);
    // passt notices its VMM is gone (--one-off); the VMM left its pid file and socket behind.
    wait_dead(passt[0]);
    assert!(dir.join("vmm.pid").exists() && dir.join("api.sock").exists());

    let status = env.ok(&["status", "k9"]);
    assert!(status.contains("VMM had died"), "{status}");
    assert!(!dir.join("vmm.pid").exists() && !dir.join("api.sock").exists());

    // up starts the dead node again and leaves the other alone.
    let b = env.pid("k9", "b").unwrap();
    let out = env.ok(&["up", "k9"]);
    assert!(
        out.contains("a: started") && out.contains("b: running"),
        "{out}"
    );
    assert!(out.contains("a: booted"), "{out}");
    assert_eq!(env.pid("k9", "b"), Some(b));
    let new_a = env.pid("k9", "a").unwrap();
    assert_ne!(new_a, pid);

    // kill -9 again, then down: the stale files are found and removed, the other node stopped.
    Command::new("kill")
        .args(["-9", &new_a.to_string()])
        .status()
        .unwrap();
    wait_dead(new_a);
    let out = env.ok(&["down", "-c", "k9"]);
    assert!(
        out.contains(
            "a: its VMM had exited without a word (killed?); removed the stale pid file and socket"
        ),
        "{out}"
    );
    assert!(out.contains("b: powered off"), "{out}");
    assert!(!dir.join("vmm.pid").exists() && !dir.join("api.sock").exists());
    assert!(!alive(b));
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn a_guest_that_ignores_the_power_button_is_stopped() {
    let ns = Netns::for_passt("hard");
    let env = Env::real(&ns);
    guest_cluster(
        &env,
        "hard",
        "button ignorebutton",
        "  - { name: a }\n  - { name: b }\n",
    );
    env.ok(&["up", "hard", "--shutdown-timeout", "2"]);
    let (a, b) = (env.pid("hard", "a").unwrap(), env.pid("hard", "b").unwrap());
    assert_eq!(flag_values(&cmdline_of(a), "--shutdown-timeout"), ["2"]);

    // down waits longer than the VMM: the VMM stops the guest itself after its 2 s (status 6).
    let t = Instant::now();
    let out = env.ok(&["down", "a", "--timeout", "20"]);
    assert!(
        out.contains("a: did not power off after the power button; its VMM stopped it after its shutdown timeout"),
        "{out}"
    );
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(console(&env, "hard", "a").contains("guest: power button pressed"));
    assert!(!alive(a));

    // down's own timeout is the shorter one: the API's power-off stops it at once.
    let out = env.ok(&["down", "b", "--timeout", "0"]);
    assert!(
        out.contains(
            "b: did not power off within 0s of the power button; stopped it (API power-off)"
        ),
        "{out}"
    );
    assert!(!alive(b));
    let log = std::fs::read_to_string(env.node_dir("hard", "b").join("vmm.log")).unwrap();
    assert!(log.contains("API power-off"), "{log}");
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn the_lock_makes_a_second_vmctl_wait_or_fail_clearly() {
    let ns = Netns::for_passt("lk");
    let env = Env::real(&ns);
    guest_cluster(&env, "lk", "button", "  - { name: a }\n");
    env.ok(&["up", "lk"]);
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
    let pid = env.pid("lk", "a").expect("nothing was stopped");
    assert!(alive(pid));

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
    assert!(!alive(pid));
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn destroy_needs_yes() {
    let ns = Netns::for_passt("gone");
    let env = Env::real(&ns);
    guest_cluster(&env, "gone", "button", "  - { name: a }\n");
    env.ok(&["up", "gone"]);
    let pid = env.pid("gone", "a").unwrap();
    let err = env.fails(&["destroy", "gone"]);
    assert!(err.contains("run again with --yes"), "{err}");
    assert!(alive(pid));
    assert!(env.node_dir("gone", "a").join("root.img").exists());

    let out = env.ok(&["destroy", "gone", "--yes"]);
    assert!(out.contains("a: powered off"), "{out}");
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
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn console_attaches_through_the_api_and_detaches_with_the_escape_key() {
    use std::io::Read;
    let ns = Netns::for_passt("con");
    let env = Env::real(&ns);
    // "echo": the guest reads one line from its serial port and prints it, then waits for the
    // power button.
    guest_cluster(&env, "con", "echo button", "  - { name: a }\n");
    env.ok(&["up", "con", "--no-wait"]);
    let log = env.node_dir("con", "a").join("console.log");
    wait_for_text(&log, "guest: ready for input", Duration::from_secs(60));

    let mut child = env
        .vmctl()
        .args(["console", "a"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("waiting for the power button") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        (String::from_utf8_lossy(&seen).into_owned(), stdout)
    });
    // The console attaches asynchronously; the guest waits for a line for many seconds.
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"hello vmctl\r").unwrap();
    let (seen, mut stdout) = reader.join().unwrap();
    assert!(
        seen.contains("guest: got input 'hello vmctl'"),
        "the typed line reached the guest and its answer came back: {seen:?}"
    );
    // Ctrl-] q detaches; vmctl console ends, the VM keeps running.
    stdin.write_all(b"\x1dq").unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    assert!(status.success(), "{err}");
    assert!(err.contains("Ctrl-] then q detaches"), "{err}");
    let pid = env.pid("con", "a").unwrap();
    assert!(
        alive(pid),
        "detaching leaves the VM running; the VMM's log:\n{}",
        std::fs::read_to_string(env.node_dir("con", "a").join("vmm.log")).unwrap_or_default()
    );
    assert_eq!(api(&env, "con", "a", "status")["state"], "running");

    // logs: the console log, input echo included.
    let logs = env.ok(&["logs", "a"]);
    assert!(logs.contains("guest: got input 'hello vmctl'"), "{logs}");
    let vmm_log = env.ok(&["logs", "a", "--vmm"]);
    assert!(vmm_log.contains("serial output matched"), "{vmm_log}");

    let out = env.ok(&["down"]);
    assert!(out.contains("a: powered off"), "{out}");
    // A stopped node has no console to attach to.
    let err = env.fails(&["console", "a"]);
    assert!(err.contains("a is not running"), "{err}");
}
