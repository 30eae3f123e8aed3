//! The devices and services issue 5 adds to a VM, kept out of [`crate::vmm`] so the core
//! stays small: virtio-9p shares, virtio-rng, fw_cfg (Ignition), the ACPI power button with
//! the shutdown controller and its signal handling, and the API socket.

use std::os::unix::net::UnixListener;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;
use serde_json::{Value, json};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::api::server::ApiError;
use crate::api::{ApiContext, ApiServer};
use crate::bus::{Bus, BusError};
use crate::config::share::{ShareConfigError, read_ignition};
use crate::config::{RngMode, VmConfig};
use crate::console::output::SharedConnection;
use crate::devices::acpi_ged::AcpiGed;
use crate::devices::fw_cfg::{FwCfg, FwCfgError};
use crate::devices::serial::SerialDevice;
use crate::event_loop::DeviceEventLoop;
use crate::exit::{ExitNotifier, VmExit};
use crate::interrupt::{InterruptError, LegacyIrq, MsiRouter};
use crate::layout::{self, ports};
use crate::memory::GuestMemoryMmap;
use crate::pci::PciRoot;
use crate::pci::bus::PciError;
use crate::seccomp::ThreadStart;
use crate::shutdown::{ShutdownController, SignalHandler};
use crate::sync::lock;
use crate::virtio::VirtioDevice;
use crate::virtio::block::Block;
use crate::virtio::event_handler::{QueueDevice, QueueEventHandler};
use crate::virtio::p9::{P9, ShareError};
use crate::virtio::pci::{NotifyRegistrar, TransportError, VirtioPciDevice};
use crate::virtio::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    Settings(#[from] ShareConfigError),
    #[error(transparent)]
    FwCfg(#[from] FwCfgError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot start the API thread: {0}")]
    ApiThread(std::io::Error),
    #[error("cannot handle SIGTERM/SIGINT: {0}")]
    Signals(std::io::Error),
    #[error("device bus: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Interrupt(#[from] InterruptError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Pci(#[from] PciError),
}

impl DeviceError {
    /// Whether the user's configuration is at fault (exit status 2).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            DeviceError::Share(_) | DeviceError::Settings(_) | DeviceError::Api(_)
        )
    }
}

/// What [`ExtraDevices::attach`] plugs the devices into.
pub struct Platform<'a> {
    pub vm: &'a Arc<VmFd>,
    pub mem: &'a GuestMemoryMmap,
    pub pio: &'a Arc<Bus>,
    pub pci: &'a Arc<Mutex<PciRoot>>,
    pub router: &'a Arc<dyn MsiRouter>,
    pub notify: &'a Arc<dyn NotifyRegistrar>,
    pub event_loop: &'a mut DeviceEventLoop,
    pub exit: &'a ExitNotifier,
    pub serial: &'a Arc<Mutex<SerialDevice>>,
    pub config: &'a VmConfig,
    pub disks: &'a [Arc<Mutex<Block>>],
}

pub struct ExtraDevices {
    shares: Vec<Arc<Mutex<P9>>>,
    ignition: Option<Vec<u8>>,
    console_tap: SharedConnection,
    api_socket: Option<ApiServer>,
    api_listener: Option<UnixListener>,
    /// Built in attach, which has what the API serves from.
    api: Option<ApiContext>,
    shutdown: Option<Arc<ShutdownController>>,
}

/// Puts a virtio device on the PCI bus and its queues on the event loop.
fn add_virtio<D>(
    p: &mut Platform<'_>,
    device: Arc<Mutex<D>>,
    name: String,
) -> Result<usize, DeviceError>
where
    D: VirtioDevice + QueueDevice + 'static,
{
    let queues = lock(&device).queue_max_sizes().len();
    let mut evts = Vec::with_capacity(queues);
    let mut handler_evts = Vec::with_capacity(queues);
    for _ in 0..queues {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(TransportError::EventFd)?;
        handler_evts.push(evt.try_clone().map_err(TransportError::EventFd)?);
        evts.push(evt);
    }
    let transport = VirtioPciDevice::new(
        device.clone(),
        evts,
        p.mem.clone(),
        p.router.clone(),
        p.notify.clone(),
    )?;
    let slot = lock(p.pci).add_device(Arc::new(Mutex::new(transport)))?;
    p.event_loop
        .add(Box::new(QueueEventHandler::new(device, handler_evts, name)));
    Ok(slot)
}

impl ExtraDevices {
    /// Checks and opens what the user named, before KVM is touched.
    pub fn prepare(config: &VmConfig) -> Result<Self, DeviceError> {
        let mut shares = Vec::with_capacity(config.shares.len());
        for s in &config.shares {
            shares.push(Arc::new(Mutex::new(P9::new(s)?)));
        }
        let ignition = config.ignition.as_deref().map(read_ignition).transpose()?;
        let api_socket = match &config.api_socket {
            Some(path) => Some(ApiServer::bind(path)?),
            None => None,
        };
        let (api_socket, listener) = match api_socket {
            Some((s, l)) => (Some(s), Some(l)),
            None => (None, None),
        };
        let console_tap: SharedConnection = Arc::new(Mutex::new(None));
        Ok(ExtraDevices {
            shares,
            ignition,
            console_tap,
            api_socket,
            api_listener: listener,
            api: None,
            shutdown: None,
        })
    }

    /// Where the serial output is copied for an API console client.
    pub fn console_tap(&self) -> SharedConnection {
        self.console_tap.clone()
    }

    /// Plugs everything into the VM.
    pub fn attach(&mut self, mut p: Platform<'_>) -> Result<(), DeviceError> {
        // Power button and shutdown.
        let ged = Arc::new(Mutex::new(AcpiGed::new(LegacyIrq::new(
            p.vm,
            layout::GED_IRQ,
        )?)));
        p.pio.insert(ged.clone(), u64::from(ports::ACPI_GED), 1)?;
        let shutdown = Arc::new(ShutdownController::new(
            ged,
            p.exit.clone(),
            p.config.shutdown_timeout,
        ));
        p.event_loop.add(Box::new(
            SignalHandler::install(shutdown.clone()).map_err(DeviceError::Signals)?,
        ));
        self.shutdown = Some(shutdown.clone());

        // fw_cfg, always present like QEMU's; the Ignition files when given.
        let mut fw_cfg = FwCfg::new(p.mem.clone(), p.config.cpus);
        if let Some(ign) = &self.ignition {
            fw_cfg.add_ignition(ign)?;
        }
        let fw_cfg_files: Vec<String> = fw_cfg.file_names().map(str::to_owned).collect();
        p.pio.insert(
            Arc::new(Mutex::new(fw_cfg)),
            u64::from(ports::FW_CFG_SELECTOR),
            u64::from(ports::FW_CFG_LEN),
        )?;

        // virtio-9p and virtio-rng after the disks.
        let mut share_info = Vec::new();
        for share in self.shares.clone() {
            let (tag, root, ro) = {
                let s = lock(&share);
                (s.tag().to_owned(), s.root().to_owned(), s.readonly())
            };
            let slot = add_virtio(&mut p, share.clone(), format!("share {tag}"))?;
            tracing::info!(
                "share {} as tag {tag} on PCI 00:{slot:02x}.0{}",
                root.display(),
                if ro { " (read-only)" } else { "" }
            );
            share_info.push((share, slot));
        }
        let rng = match p.config.rng {
            RngMode::On => {
                let rng = Arc::new(Mutex::new(Rng::new()));
                let slot = add_virtio(&mut p, rng.clone(), "entropy device".to_owned())?;
                tracing::info!("entropy device on PCI 00:{slot:02x}.0");
                Some((rng, slot))
            }
            RngMode::Off => None,
        };

        if self.api_listener.is_some() {
            let disks: Vec<Value> = p
                .disks
                .iter()
                .zip(&p.config.disks)
                .map(|(b, cfg)| {
                    let sectors = lock(b).disk().sectors();
                    json!({
                        "path": cfg.path,
                        "readonly": cfg.readonly,
                        "serial": cfg.serial,
                        "sectors": sectors,
                    })
                })
                .collect();
            let marker = p.config.boot_marker.clone();
            let (cpus, memory) = (p.config.cpus, p.config.memory);
            let status = move || {
                let shares: Vec<Value> = share_info
                    .iter()
                    .map(|(s, slot)| {
                        let s = lock(s);
                        json!({
                            "tag": s.tag(),
                            "path": s.root(),
                            "readonly": s.readonly(),
                            "pci": format!("00:{slot:02x}.0"),
                            "driver_ready": s.is_active(),
                            "requests": s.requests(),
                        })
                    })
                    .collect();
                let rng = rng.as_ref().map(|(r, slot)| {
                    let r = lock(r);
                    json!({
                        "pci": format!("00:{slot:02x}.0"),
                        "driver_ready": r.is_active(),
                        "bytes": r.bytes_served(),
                    })
                });
                let seen = crate::boot_marker::serial_marker_seen_ms();
                crate::api::protocol::fields(json!({
                    "cpus": cpus,
                    "memory_mib": memory,
                    "boot_marker": marker.as_ref().map(|m| json!({
                        "text": m,
                        "seen": seen.is_some(),
                        "at_ms": seen.map(|ms| ms as u64),
                    })),
                    "devices": {
                        "disks": disks,
                        "shares": shares,
                        "rng": rng,
                        "fw_cfg_files": fw_cfg_files,
                    },
                }))
            };
            self.api = Some(ApiContext {
                shutdown,
                status: Box::new(status),
                console_tap: self.console_tap.clone(),
                serial: p.serial.clone(),
                started: Instant::now(),
                console_clients: Default::default(),
            });
        }
        Ok(())
    }

    /// Starts serving the API socket (when the VM starts running), if there is one.
    pub fn start_api(&mut self, start: ThreadStart) -> Result<(), DeviceError> {
        if let (Some(listener), Some(ctx)) = (self.api_listener.take(), self.api.take()) {
            ApiServer::start(listener, ctx, start).map_err(DeviceError::ApiThread)?;
        }
        Ok(())
    }

    pub fn shutdown(&self) -> Option<&Arc<ShutdownController>> {
        self.shutdown.as_ref()
    }

    /// Keeps the socket file until the VMM ends.
    pub fn has_api(&self) -> bool {
        self.api_socket.is_some()
    }
}

/// Waits for the first exit request, ending the VM when a graceful shutdown times out.
pub fn wait_for_exit(rx: &Receiver<VmExit>, extra: &ExtraDevices) -> VmExit {
    loop {
        // Short waits: a shutdown may start (and its deadline pass) at any time.
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(exit) => return exit,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(s) = extra.shutdown() {
                    s.check_deadline(Instant::now());
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return VmExit::VmmError("every exit path closed".to_owned());
            }
        }
    }
}
