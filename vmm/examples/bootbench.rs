//! Boot benchmark driver for scripts/bench-boot.sh: runs our vmm and QEMU (`-M microvm`) on
//! the same PVH test guest and prints medians side by side. Figures only; it never fails on
//! a target.
//!
//! Per run it measures, from just before spawning the process:
//! - time to the first byte on the serial console (the guest's first output, a few
//!   instructions after its first one),
//! - time to process exit, and the peak RSS (wait4's ru_maxrss),
//! - and, in separate "hold" runs where the guest halts after its output, the RSS of the
//!   process minus the resident pages of guest RAM (from /proc/PID/smaps): the VMM's own
//!   memory overhead.
//!
//! usage: bootbench --guest ELF --vmm PATH [--qemu PATH] [--runs N] [--memory MiB]

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

struct Args {
    guest: String,
    vmm: String,
    qemu: Option<String>,
    runs: usize,
    memory_mib: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        guest: String::new(),
        vmm: String::new(),
        qemu: None,
        runs: 10,
        memory_mib: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--guest" => a.guest = val()?,
            "--vmm" => a.vmm = val()?,
            "--qemu" => a.qemu = Some(val()?),
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--memory" => a.memory_mib = val()?.parse().map_err(|e| format!("--memory: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.guest.is_empty() || a.vmm.is_empty() {
        return Err(
            "usage: bootbench --guest ELF --vmm PATH [--qemu PATH] [--runs N] [--memory MiB]"
                .into(),
        );
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Vmm,
    Qemu,
}

fn command(kind: Kind, a: &Args, cmdline: &str) -> Command {
    match kind {
        Kind::Vmm => {
            let mut c = Command::new(&a.vmm);
            c.args([
                "-v",
                "--kernel",
                &a.guest,
                "--memory",
                &a.memory_mib.to_string(),
                "--cmdline",
                cmdline,
            ]);
            c
        }
        Kind::Qemu => {
            let mut c = Command::new(a.qemu.as_deref().unwrap_or("qemu-system-x86_64"));
            c.args([
                "-M",
                "microvm,accel=kvm",
                "-m",
                &format!("{}M", a.memory_mib),
                "-nodefaults",
                "-no-user-config",
                "-nographic",
                "-no-reboot",
                "-serial",
                "stdio",
                "-kernel",
                &a.guest,
                "-append",
                cmdline,
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]);
            c
        }
    }
}

struct Timing {
    first_byte_ms: f64,
    exit_ms: f64,
    max_rss_kib: u64,
    status: ExitStatus,
    /// The vmm's own log of the first debug-port write (start of main to first instruction).
    internal_first_ms: Option<f64>,
}

/// Reaps `pid` with wait4 to get its resource usage.
fn wait4(pid: u32) -> std::io::Result<(ExitStatus, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; wait4 fills both outputs.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; pointers are to live locals.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((ExitStatus::from_raw(status), ru.ru_maxrss as u64))
}

fn time_run(kind: Kind, a: &Args) -> Result<Timing, String> {
    let mut cmd = command(kind, a, "bench");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                first.get_or_insert_with(|| start.elapsed());
            }
        }
    }
    let (status, max_rss_kib) = wait4(child.id()).map_err(|e| e.to_string())?;
    let exit = start.elapsed();
    let stderr = err_reader.join().unwrap_or_default();
    let internal_first_ms = stderr
        .lines()
        .find(|l| l.contains("first guest write to debug port"))
        .and_then(|l| l.split(" at ").nth(1))
        .and_then(|t| t.trim_end_matches(" ms").trim().parse().ok());
    Ok(Timing {
        first_byte_ms: first.ok_or("no serial output")?.as_secs_f64() * 1e3,
        exit_ms: exit.as_secs_f64() * 1e3,
        max_rss_kib,
        status,
        internal_first_ms,
    })
}

struct Memory {
    rss_kib: u64,
    guest_kib: u64,
}

/// Sums Rss over all mappings, and the Rss of guest RAM: the largest anonymous mapping at
/// least as big as the guest's memory.
fn smaps(pid: u32, guest_bytes: u64) -> Result<Memory, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| e.to_string())?;
    let mut total = 0;
    let mut best: Option<(u64, u64)> = None; // (size kB, rss kB)
    let mut cur_size = 0;
    let mut cur_anon = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            cur_anon = line.split_whitespace().nth(5).is_none();
            continue;
        }
        let kib = || {
            f.clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Size:" => cur_size = kib(),
            "Rss:" => {
                let rss = kib();
                total += rss;
                if cur_anon
                    && cur_size * 1024 >= guest_bytes
                    && best.is_none_or(|(s, _)| cur_size > s)
                {
                    best = Some((cur_size, rss));
                }
            }
            _ => {}
        }
    }
    let (_, guest) = best.ok_or("guest RAM mapping not found")?;
    Ok(Memory {
        rss_kib: total,
        guest_kib: guest,
    })
}

fn hold_run(kind: Kind, a: &Args) -> Result<Memory, String> {
    let mut cmd = command(kind, a, "bench hold");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("bench done") {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("guest did not finish".into());
        }
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    // Let the VMM settle after the guest's last exit.
    std::thread::sleep(Duration::from_millis(100));
    let m = smaps(child.id(), a.memory_mib << 20);
    let _ = child.kill();
    let _ = child.wait();
    m
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Summary {
    first_byte: f64,
    internal_first: f64,
    exit: f64,
    max_rss_mib: f64,
    overhead_mib: f64,
    guest_kib: f64,
}

fn measure(kind: Kind, a: &Args) -> Result<Summary, String> {
    let name = if kind == Kind::Vmm { "vmm" } else { "qemu" };
    let (mut fb, mut inner, mut ex, mut rss) = (vec![], vec![], vec![], vec![]);
    // One warm-up run so both start with the same page cache.
    time_run(kind, a)?;
    for _ in 0..a.runs {
        let t = time_run(kind, a)?;
        let ok = match kind {
            Kind::Vmm => t.status.code() == Some(32),
            Kind::Qemu => t.status.code() == Some(1),
        };
        if !ok {
            return Err(format!(
                "{name}: guest did not exit cleanly ({:?})",
                t.status
            ));
        }
        fb.push(t.first_byte_ms);
        ex.push(t.exit_ms);
        rss.push(t.max_rss_kib as f64 / 1024.0);
        if let Some(i) = t.internal_first_ms {
            inner.push(i);
        }
    }
    let (mut over, mut guest) = (vec![], vec![]);
    for _ in 0..a.runs.min(5) {
        let m = hold_run(kind, a)?;
        over.push((m.rss_kib.saturating_sub(m.guest_kib)) as f64 / 1024.0);
        guest.push(m.guest_kib as f64);
    }
    Ok(Summary {
        first_byte: median(fb),
        internal_first: median(inner),
        exit: median(ex),
        max_rss_mib: median(rss),
        overhead_mib: median(over),
        guest_kib: median(guest),
    })
}

/// What every VMM pays on this host before a guest can run: KVM_CREATE_VM and adding the
/// first memory slot (medians of 10), for context next to the targets.
fn host_floor() -> Option<(f64, f64)> {
    let kvm = kvm_ioctls::Kvm::new().ok()?;
    let (mut create, mut slot) = (vec![], vec![]);
    for _ in 0..10 {
        let mem = vmm::memory::create_guest_memory(2 << 20).ok()?;
        let t0 = Instant::now();
        let vm = kvm.create_vm().ok()?;
        let t1 = Instant::now();
        vmm::memory::register_with_kvm(&vm, &mem).ok()?;
        create.push((t1 - t0).as_secs_f64() * 1e3);
        slot.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    Some((median(create), median(slot)))
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let ours = match measure(Kind::Vmm, &a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: vmm runs failed: {e}");
            std::process::exit(1);
        }
    };
    let qemu = match a.qemu.as_ref().map(|_| measure(Kind::Qemu, &a)) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("warning: qemu runs failed, showing vmm only: {e}");
            None
        }
        None => None,
    };
    if let Some((create, slot)) = host_floor() {
        println!(
            "KVM costs any VMM pays (warm, in-process): KVM_CREATE_VM {create:.2} ms, first memory slot {slot:.2} ms"
        );
    }
    println!(
        "medians of {} runs ({} hold runs for memory), guest memory {} MiB",
        a.runs,
        a.runs.min(5),
        a.memory_mib
    );
    println!(
        "{:<46} {:>10} {:>10} {:>10}",
        "metric", "vmm", "qemu", "vmm/qemu"
    );
    let row = |name: &str, ours: f64, q: Option<f64>| {
        let (qs, ratio) = match q {
            Some(q) if q.is_finite() => (format!("{q:.2}"), format!("{:.2}", ours / q)),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        println!("{name:<46} {ours:>10.2} {qs:>10} {ratio:>10}");
    };
    row(
        "start -> first serial byte (ms)",
        ours.first_byte,
        qemu.as_ref().map(|q| q.first_byte),
    );
    row(
        "start of main -> first instruction (ms, vmm log)",
        ours.internal_first,
        None,
    );
    row(
        "start -> exit (ms)",
        ours.exit,
        qemu.as_ref().map(|q| q.exit),
    );
    row(
        "peak RSS (MiB)",
        ours.max_rss_mib,
        qemu.as_ref().map(|q| q.max_rss_mib),
    );
    row(
        "RSS minus guest pages (MiB)",
        ours.overhead_mib,
        qemu.as_ref().map(|q| q.overhead_mib),
    );
    row(
        "guest pages resident (KiB)",
        ours.guest_kib,
        qemu.as_ref().map(|q| q.guest_kib),
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let ahead_first = qemu.as_ref().is_none_or(|q| ours.first_byte < q.first_byte);
    let ahead_mem = qemu
        .as_ref()
        .is_none_or(|q| ours.overhead_mib < q.overhead_mib);
    println!(
        "target first instruction <= 5 ms and ahead of QEMU: {} ({:.2} ms to first serial byte)",
        verdict(ours.first_byte <= 5.0 && ahead_first),
        ours.first_byte
    );
    println!(
        "target VMM overhead <= 5 MiB and ahead of QEMU: {} ({:.2} MiB)",
        verdict(ours.overhead_mib <= 5.0 && ahead_mem),
        ours.overhead_mib
    );
}
