//! `vmctl run NODE`, as vm@.service runs it: READY=1 over the real sd_notify protocol once the
//! VM has booted, a graceful stop on SIGTERM, exit status 0 after a power-off.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, alive, user_cluster};

#[test]
fn run_notifies_ready_and_stops_gracefully_on_sigterm() {
    let env = Env::new();
    user_cluster(&env, "svc", "  - { name: a }\n");
    // up records the cluster (and starts it); stop it so run owns the node.
    env.ok(&["up", "svc", "--no-wait"]);
    env.wait_started("svc", "a");
    env.ok(&["down"]);

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
        console.contains("Run /init"),
        "ready only once booted: {console}"
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
    assert!(console.contains("stand-in: powered off"), "{console}");
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
fn run_fails_when_the_vmm_dies() {
    let env = Env::new();
    user_cluster(&env, "crash", "  - { name: a }\n");
    env.ok(&["up", "crash", "--no-wait"]);
    env.wait_started("crash", "a");
    env.ok(&["down"]);
    let child = env
        .vmctl()
        .args(["run", "a"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_started("crash", "a");
    let vmm = env.pid("crash", "a").unwrap();
    Command::new("kill")
        .args(["-9", &vmm.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "Restart=on-failure must see a failure"
    );
    assert!(err.contains("the VMM exited with signal: 9"), "{err}");
    assert!(env.pid("crash", "a").is_none());
}
