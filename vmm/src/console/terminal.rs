//! Raw mode for a terminal on stdin, restored on drop, on exit paths and after a panic.

use std::sync::Mutex;

use crate::sync::lock;

/// The settings to restore; global so the panic hook and `process::exit` paths can reach it.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Puts stdin in raw mode (no echo, no line editing, no signals from Ctrl-C) while alive.
pub struct RawTerminal {
    _private: (),
}

impl RawTerminal {
    /// Returns None when stdin is not a terminal.
    pub fn enable() -> std::io::Result<Option<Self>> {
        if !stdin_is_terminal() {
            return Ok(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it and we check the result.
        let mut orig: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and a pointer to a live termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut orig) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = orig;
        // SAFETY: cfmakeraw only edits the struct we pass.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output processing: the guest sends "\n" and the terminal should still return
        // the carriage.
        raw.c_oflag = orig.c_oflag;
        // SAFETY: valid descriptor and a pointer to a live termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        *lock(&SAVED) = Some(orig);
        install_panic_hook();
        Ok(Some(RawTerminal { _private: () }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores the saved terminal settings, if any. Safe to call more than once.
pub fn restore() {
    if let Some(orig) = lock(&SAVED).take() {
        // SAFETY: valid descriptor and a pointer to a live termios.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &orig) };
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
