//! `vmctl run NODE`, as vm@.service runs it, with the real VMM and the test guest: READY=1 over
//! the real sd_notify protocol once the VMM's API says the boot marker was seen, the power
//! button on SIGTERM, exit status 0 after the guest powered off, and a failure status when the
//! guest crashes.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, Netns, alive, guest_cluster, wait_for_text};

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn run_notifies_ready_and_stops_gracefully_on_sigterm() {
    let ns = Netns::for_passt("svc");
    let env = Env::real(&ns);
    guest_cluster(&env, "svc", "button", "  - { name: a }\n");
    // up records the cluster (and starts it); stop it so run owns the node.
    env.ok(&["up", "svc"]);
    env.ok(&["down"]);
    std::fs::remove_file(env.node_dir("svc", "a").join("console.log")).unwrap();

    let sock_path = env.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The systemd instance name form.
    let mut child = env
        .vmctl()
        .args(["run", "svc-a"])
        .env("NOTIFY_SOCKET", &sock_path)
        .spawn()
        .unwrap();

    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !said
        .iter()
        .any(|m: &String| m.lines().any(|l| l == "READY=1"))
    {
        assert!(Instant::now() < deadline, "no READY=1; got {said:?}");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let vmm = env.pid("svc", "a").expect("the VMM's pid file");
    assert!(alive(vmm));
    let console = std::fs::read_to_string(env.node_dir("svc", "a").join("console.log")).unwrap();
    assert!(
        console.contains("guest: waiting for the power button"),
        "ready only once booted: {console}"
    );
    assert!(
        said.iter()
            .any(|m| m.contains("STATUS=booted (console showed")),
        "{said:?}"
    );
    // A second vmctl cannot start the same node meanwhile.
    let err = env.fails(&["run", "svc:a"]);
    assert!(err.contains("already running"), "{err}");

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    assert!(!alive(vmm));
    let console = std::fs::read_to_string(env.node_dir("svc", "a").join("console.log")).unwrap();
    assert!(console.contains("guest: power button pressed"), "{console}");
    assert!(env.pid("svc", "a").is_none(), "pid file removed");
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut rest = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test guest; run by scripts/test.sh"]
fn run_fails_when_the_guest_crashes_or_the_vmm_is_killed() {
    let ns = Netns::for_passt("crash");
    let env = Env::real(&ns);
    // A triple fault: the VMM exits with status 4 (docs/vmm.md).
    guest_cluster(&env, "crash", "crash", "  - { name: a }\n");
    // The guest is gone within milliseconds: whether up still sees the VMM depends on the
    // host's speed. Either up reports the exit with its status, or it records the cluster and
    // down tidies up after the dead VMM.
    let up = env.run(&["up", "crash", "--no-wait"]);
    if !up.status.success() {
        let err = String::from_utf8_lossy(&up.stderr);
        assert!(
            err.contains("a: the VMM exited at once (exit status: 4)"),
            "{err}"
        );
        assert!(env.pid("crash", "a").is_none());
    }
    env.ok(&["down"]);
    let out = env.run(&["run", "a"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "Restart=on-failure must see a failure: {err}"
    );
    assert!(err.contains("the VMM exited with exit status: 4"), "{err}");
    assert!(env.pid("crash", "a").is_none());

    // Killed from outside while it runs.
    std::fs::write(
        env.work.join("crash.yaml"),
        std::fs::read_to_string(env.work.join("crash.yaml"))
            .unwrap()
            .replace("cmdline: crash", "cmdline: button"),
    )
    .unwrap();
    env.ok(&["up", "crash"]);
    env.ok(&["down"]);
    let log = env.node_dir("crash", "a").join("console.log");
    std::fs::remove_file(&log).unwrap();
    let child = env
        .vmctl()
        .args(["run", "a"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_text(
        &log,
        "waiting for the power button",
        Duration::from_secs(60),
    );
    let vmm = env.pid("crash", "a").unwrap();
    Command::new("kill")
        .args(["-9", &vmm.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the VMM exited with signal: 9"), "{err}");
    assert!(env.pid("crash", "a").is_none());
}
