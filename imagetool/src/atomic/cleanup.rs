//! Removes unfinished temporary outputs when the process is interrupted. Drop handlers do not run
//! when a signal kills the process, so a watcher thread deletes what is registered and then lets
//! the signal take its default course (exit status 128+N, as shells expect).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn pending() -> &'static Mutex<Vec<PathBuf>> {
    static PENDING: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    PENDING.get_or_init(|| Mutex::new(Vec::new()))
}

pub(crate) fn register(path: &Path) {
    if let Ok(mut p) = pending().lock() {
        p.push(path.to_path_buf());
    }
}

pub(crate) fn unregister(path: &Path) {
    if let Ok(mut p) = pending().lock() {
        p.retain(|q| q != path);
    }
}

fn remove_all_pending() {
    // A poisoned lock still holds the list; cleanup matters more than the panic that poisoned it.
    let list = match pending().lock() {
        Ok(g) => g.clone(),
        Err(e) => e.into_inner().clone(),
    };
    for path in list {
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Starts the watcher thread. Call once, early in `main`, before any output is created.
pub fn install_signal_cleanup() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signal-cleanup".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_all_pending();
                // Restores the default action and re-raises, so the exit status says which signal.
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}
