//! `vmctl console NODE`: the serial console through the VMM's API socket. The terminal is put in
//! raw mode; Ctrl-] then q detaches (the VM keeps running).

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::Context;
use crate::api::Client;
use crate::node::process;
use crate::state::pidfile::Liveness;

const ESCAPE: u8 = 0x1d; // Ctrl-]

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NODE or CLUSTER:NODE.
    node: String,
}

/// Restores the terminal when dropped, also on errors.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved =
            rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster, node) = ctx.node_ref(&args.node)?;
    let nd = {
        let locked = ctx.open(&cluster, "console")?;
        if locked.cluster.node(&node).is_none() {
            bail!("cluster {cluster} has no node {node}");
        }
        locked.dir.node(&node)
    };
    if !matches!(process::liveness(&nd), Liveness::Running(_)) {
        bail!(
            "{node} is not running: start it with vmctl up {cluster} (its past output: vmctl logs {cluster}:{node})"
        );
    }
    let stream = Client::connect(&nd.api_socket(), Duration::from_secs(5))?.into_console()?;
    eprintln!("connected to {node}'s console; Ctrl-] then q detaches\r");
    let raw = RawMode::enter()?;
    let result = pump(stream, std::io::stdin(), std::io::stdout());
    drop(raw);
    eprintln!();
    result
}

/// Copies the VM's output to `output` and `input` to the VM until the escape sequence, the end of
/// `input`, or the VMM closing the connection.
fn pump(
    stream: UnixStream,
    mut stdin: impl Read,
    mut stdout: impl Write + Send + 'static,
) -> anyhow::Result<()> {
    let mut from_vm = stream.try_clone()?;
    // VM to terminal on its own thread; it ends when the VMM closes the connection.
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_vm.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    });
    let mut to_vm = stream;
    let mut buf = [0u8; 1024];
    let mut escaped = false;
    loop {
        if out.is_finished() {
            break;
        }
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut send = Vec::with_capacity(n);
        let mut detach = false;
        for &b in &buf[..n] {
            match (escaped, b) {
                (false, ESCAPE) => escaped = true,
                (true, b'q') | (true, b'.') => {
                    detach = true;
                    break;
                }
                (true, ESCAPE) => {
                    send.push(ESCAPE);
                    escaped = false;
                }
                (true, other) => {
                    send.push(ESCAPE);
                    send.push(other);
                    escaped = false;
                }
                (false, other) => send.push(other),
            }
        }
        if to_vm.write_all(&send).is_err() || detach {
            break;
        }
    }
    let _ = to_vm.shutdown(std::net::Shutdown::Both);
    let _ = out.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_vm_until_the_escape_sequence() {
        let (ours, vm) = UnixStream::pair().unwrap();
        let vm_side = std::thread::spawn(move || {
            let mut vm = vm;
            vm.write_all(b"login: ").unwrap();
            let mut got = Vec::new();
            vm.read_to_end(&mut got).unwrap();
            got
        });
        // Ctrl-] Ctrl-] sends one Ctrl-]; Ctrl-] q detaches, and what follows is not sent.
        let keys: &[u8] = b"core\r\x1d\x1dx\x1dqnot sent";
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Types only once the prompt is on the screen, as a person would.
        struct AfterPrompt<'a>(&'a [u8], std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Read for AfterPrompt<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                while self.1.lock().unwrap().is_empty() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.0.read(buf)
            }
        }
        pump(ours, AfterPrompt(keys, out.clone()), Shared(out.clone())).unwrap();
        assert_eq!(vm_side.join().unwrap(), b"core\r\x1dx");
        assert_eq!(&out.lock().unwrap()[..], b"login: ");
    }
}
