//! Console input, served by the device event loop: stdin (with the escape sequence on a
//! terminal) or a unix socket client, fed into the UART's receive FIFO. When the FIFO is full
//! the source is paused until the guest drains it, so no input is lost or busy-polled.

use std::io::Read;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::escape::EscapeFilter;
use super::output::SharedConnection;
use crate::devices::serial::SerialDevice;
use crate::exit::{ExitNotifier, VmExit};
use crate::sync::lock;

pub enum InputSource {
    /// stdin; `escape` is set when it is a terminal.
    Stdin { escape: Option<EscapeFilter> },
    /// A listening socket; one client at a time, the newest wins.
    Socket {
        listener: UnixListener,
        conn: SharedConnection,
        reader: Option<UnixStream>,
    },
}

pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    source: InputSource,
    space_evt: EventFd,
    exit: ExitNotifier,
    /// The fd we stopped watching because the FIFO was full.
    paused: Option<RawFd>,
}

impl SerialInput {
    pub fn new(
        serial: Arc<Mutex<SerialDevice>>,
        source: InputSource,
        space_evt: EventFd,
        exit: ExitNotifier,
    ) -> Self {
        SerialInput {
            serial,
            source,
            space_evt,
            exit,
            paused: None,
        }
    }

    fn watch(ops: &mut EventOps, fd: RawFd) {
        if let Err(e) = ops.add(Events::with_data_raw(fd, 0, EventSet::IN)) {
            // E.g. stdin is /dev/null or a regular file, which epoll cannot watch: there is
            // no interactive input to wait for then.
            tracing::info!("console input on fd {fd} cannot be watched, input disabled: {e:?}");
        }
    }

    fn unwatch(ops: &mut EventOps, fd: RawFd) {
        let _ = ops.remove(Events::with_data_raw(fd, 0, EventSet::IN));
    }

    /// Reads what fits in the FIFO from `fd`. Returns false at end of input.
    fn pump(&mut self, ops: &mut EventOps, fd: RawFd) -> bool {
        let room = lock(&self.serial).fifo_capacity();
        if room == 0 {
            Self::unwatch(ops, fd);
            self.paused = Some(fd);
            return true;
        }
        let mut buf = [0u8; 64];
        let want = room.min(buf.len());
        let n = match &mut self.source {
            InputSource::Stdin { .. } => std::io::stdin().lock().read(&mut buf[..want]),
            InputSource::Socket {
                reader: Some(r), ..
            } => r.read(&mut buf[..want]),
            InputSource::Socket { reader: None, .. } => return false,
        };
        let n = match n {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return true;
            }
            Err(e) => {
                tracing::debug!("console input: {e}");
                return false;
            }
        };
        let mut bytes = Vec::with_capacity(n);
        let quit = match &mut self.source {
            InputSource::Stdin { escape: Some(f) } => f.feed(&buf[..n], &mut bytes),
            _ => {
                bytes.extend_from_slice(&buf[..n]);
                false
            }
        };
        if quit {
            self.exit.notify(VmExit::HostStop);
            return true;
        }
        lock(&self.serial).enqueue(&bytes);
        true
    }

    fn accept(&mut self, ops: &mut EventOps) {
        let InputSource::Socket {
            listener,
            conn,
            reader,
        } = &mut self.source
        else {
            return;
        };
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("console socket accept: {e}");
                return;
            }
        };
        let writer = stream
            .try_clone()
            .and_then(|w| w.set_nonblocking(true).map(|_| w));
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("console socket client: {e}");
                return;
            }
        };
        if let Some(old) = reader.take() {
            Self::unwatch(ops, old.as_raw_fd());
            if self.paused == Some(old.as_raw_fd()) {
                self.paused = None;
            }
        }
        Self::watch(ops, stream.as_raw_fd());
        *reader = Some(stream);
        *lock(conn) = Some(writer);
    }

    fn disconnect(&mut self, ops: &mut EventOps) {
        if let InputSource::Socket { conn, reader, .. } = &mut self.source {
            if let Some(old) = reader.take() {
                Self::unwatch(ops, old.as_raw_fd());
            }
            *lock(conn) = None;
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.space_evt.as_raw_fd() {
            let _ = self.space_evt.read();
            if let Some(p) = self.paused.take() {
                Self::watch(ops, p);
            }
            return;
        }
        enum Source {
            Stdin,
            Listener,
            Client,
        }
        let source = match &self.source {
            InputSource::Stdin { .. } if fd == libc::STDIN_FILENO => Source::Stdin,
            InputSource::Socket { listener, .. } if fd == listener.as_raw_fd() => Source::Listener,
            InputSource::Socket {
                reader: Some(r), ..
            } if fd == r.as_raw_fd() => Source::Client,
            _ => return,
        };
        match source {
            Source::Stdin => {
                let open = self.pump(ops, fd);
                if !open {
                    Self::unwatch(ops, fd);
                }
            }
            Source::Listener => self.accept(ops),
            Source::Client => {
                let closed = !self.pump(ops, fd) || events.event_set().contains(EventSet::HANG_UP);
                if closed {
                    self.disconnect(ops);
                }
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.space_evt, EventSet::IN)) {
            tracing::warn!("console input disabled: {e:?}");
            return;
        }
        match &self.source {
            InputSource::Stdin { .. } => Self::watch(ops, libc::STDIN_FILENO),
            InputSource::Socket { listener, .. } => Self::watch(ops, listener.as_raw_fd()),
        }
    }
}
