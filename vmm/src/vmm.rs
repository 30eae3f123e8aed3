//! Builds a VM from a [`VmConfig`] and runs it.
//!
//! Threads, each a distinct kind with its own seccomp filter ([`crate::seccomp`]):
//! - main: builds everything, then waits for the first exit request, flushes disks, restores
//!   the terminal and returns; the process then exits, ending the other threads.
//! - `vcpuN`: one per vCPU, `KVM_RUN` and device emulation on I/O exits ([`crate::cpu::vcpu`]).
//! - `vmm-io`: the device event loop: queue doorbells, disk I/O, console input
//!   ([`crate::event_loop`]).
//! - `vmm-api`: the `--api-socket` server, one thread per client ([`crate::api`]).
//!
//! `--net user` also starts a `passt` child process (killed when the VMM ends); its frames and
//! log output are served by `vmm-io`, so networking adds no thread.
//!
//! SIGTERM and SIGINT press the ACPI power button ([`crate::shutdown`]); the main thread
//! enforces `--shutdown-timeout` while it waits.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier, Mutex};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::acpi::{self, AcpiError};
use crate::boot::mptable::{self, MptableError};
use crate::boot::{self, BootError, EntryPoint};
use crate::bus::{Bus, BusError};
use crate::config::{ConfigError, SerialConfig, VmConfig};
use crate::console::escape::EscapeFilter;
use crate::console::input::InputSource;
use crate::console::output::SharedConnection;
use crate::console::terminal::{RawTerminal, stdin_is_terminal};
use crate::console::{SerialInput, SerialOutput};
use crate::cpu::vcpu::{Vcpu, VcpuError};
use crate::devices::acpi_pm::AcpiPm;
use crate::devices::cmos::Cmos;
use crate::devices::debug_exit::DebugExit;
use crate::devices::debug_port::DebugPort;
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialDevice;
use crate::event_loop::DeviceEventLoop;
use crate::exit::{ExitNotifier, STATUS_CONFIG_ERROR, STATUS_VMM_ERROR, VmExit};
use crate::interrupt::{InterruptError, KvmMsiRouter, LegacyIrq, MsiRouter};
use crate::layout::{self, ports};
use crate::memory::{self, GuestMemoryMmap, MemoryError};
use crate::pci::bus::PciError;
use crate::pci::{PciConfigIo, PciConfigMmio, PciRoot};
use crate::seccomp::{self, Needs, SeccompError, SeccompMode, ThreadKind, ThreadStart, VmFilters};
use crate::sync::lock;
use crate::virtio::block::io::DiskError;
use crate::virtio::block::{Block, BlockEventHandler};
use crate::virtio::pci::{NotifyRegistrar, TransportError, VirtioPciDevice};
use crate::vmm_devices::{self, ExtraDevices};

const KVM_API_VERSION: i32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("cannot open /dev/kvm: {0} (is KVM enabled, and are you in the kvm group?)")]
    KvmOpen(kvm_ioctls::Error),
    #[error("KVM API version {0} is not supported (version 12 is)")]
    KvmVersion(i32),
    #[error("this host's KVM lacks {0}, which the VMM needs")]
    KvmCapability(&'static str),
    #[error("{0} vCPUs requested, but this host's KVM allows at most {1}")]
    TooManyCpus(u8, usize),
    #[error("cannot create the VM: {0}")]
    CreateVm(kvm_ioctls::Error),
    #[error("cannot create the in-kernel {what}: {source}")]
    Irqchip {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    #[error(transparent)]
    Mptable(#[from] MptableError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Interrupt(#[from] InterruptError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("device bus: {0}")]
    Bus(#[from] BusError),
    #[error("serial console {path}: {why}")]
    Serial { path: PathBuf, why: String },
    #[error("cannot start the device event loop: {0}")]
    EventLoop(String),
    #[error("cannot set the terminal to raw mode: {0}")]
    Terminal(std::io::Error),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Devices(#[from] vmm_devices::DeviceError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

impl Error {
    /// 2 for what the user must fix in the configuration, 1 for everything else.
    pub fn exit_status(&self) -> i32 {
        let user = match self {
            Error::Config(_) | Error::Serial { .. } | Error::TooManyCpus(..) => true,
            Error::Boot(e) => e.is_user_error(),
            Error::Disk(_) => true,
            Error::Net(e) => e.is_user_error(),
            Error::Devices(e) => e.is_user_error(),
            _ => false,
        };
        if user {
            STATUS_CONFIG_ERROR
        } else {
            STATUS_VMM_ERROR
        }
    }
}

/// A built VM, ready to run.
pub struct Vmm {
    vcpus: Vec<Vcpu>,
    event_loop: Option<DeviceEventLoop>,
    disks: Vec<Arc<Mutex<Block>>>,
    exit: ExitNotifier,
    exit_rx: Receiver<VmExit>,
    terminal: Option<RawTerminal>,
    /// 9p shares, entropy, fw_cfg, power button, shutdown and the API (issue 5).
    extra: ExtraDevices,
    // Kept alive for the VM's lifetime; dropping them tears the VM down.
    _vm: Arc<VmFd>,
    _mem: GuestMemoryMmap,
    _socket_path: Option<SocketPath>,
    /// passt processes of `--net user` NICs, killed when the VMM ends.
    _net_guards: Vec<crate::net::passt::PasstGuard>,
    /// Each thread kind's seccomp filter, compiled before KVM is opened.
    filters: VmFilters,
    seccomp: SeccompMode,
}

/// Removes the console socket file when the VMM ends.
struct SocketPath(PathBuf);

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates the VM with its RAM, in-kernel irqchip and PIT.
fn create_vm(kvm: &Kvm, cpus: u8, mem: &GuestMemoryMmap) -> Result<Arc<VmFd>, Error> {
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(Error::KvmVersion(version));
    }
    for (cap, name) in [
        (Cap::Irqchip, "an in-kernel irqchip"),
        (Cap::Ioeventfd, "ioeventfd"),
        (Cap::Irqfd, "irqfd"),
        (Cap::IrqRouting, "IRQ routing"),
        (Cap::UserMemory, "user memory slots"),
        (Cap::Pit2, "an in-kernel PIT"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(Error::KvmCapability(name));
        }
    }
    let max = kvm.get_max_vcpus();
    if usize::from(cpus) > max {
        return Err(Error::TooManyCpus(cpus, max));
    }
    let vm = kvm.create_vm().map_err(Error::CreateVm)?;
    // Memory goes in before the irqchip: once the irqchip's devices are on KVM's I/O bus,
    // every memory-slot change waits for an SRCU grace period (7 ms here, against 0.5 ms).
    memory::register_with_kvm(&vm, mem)?;
    // Needed on VMX hosts; other KVM flavours may not implement it.
    if let Err(e) = vm.set_tss_address(layout::KVM_TSS_ADDRESS as usize) {
        tracing::debug!("KVM_SET_TSS_ADDR: {e}");
    }
    vm.create_irq_chip().map_err(|source| Error::Irqchip {
        what: "IOAPIC/PIC",
        source,
    })?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(|source| Error::Irqchip {
        what: "PIT",
        source,
    })?;
    Ok(Arc::new(vm))
}

/// The serial console's output, input and raw-terminal guard.
struct Console {
    output: SerialOutput,
    input: Option<InputSource>,
    raw_terminal: bool,
    socket_path: Option<SocketPath>,
}

fn console_for(config: &VmConfig) -> Result<Console, Error> {
    let marker = config.boot_marker.as_deref();
    let serial_err = |path: &Path, why: String| Error::Serial {
        path: path.to_owned(),
        why,
    };
    Ok(match &config.serial {
        SerialConfig::Stdio => {
            let tty = stdin_is_terminal();
            Console {
                output: SerialOutput::stdout().with_marker(marker),
                input: Some(InputSource::Stdin {
                    escape: tty.then(EscapeFilter::default),
                }),
                raw_terminal: tty,
                socket_path: None,
            }
        }
        SerialConfig::File(path) => Console {
            output: SerialOutput::file(path)
                .map_err(|e| serial_err(path, e.to_string()))?
                .with_marker(marker),
            input: None,
            raw_terminal: false,
            socket_path: None,
        },
        SerialConfig::Socket(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(serial_err(path, "exists and is not a socket".to_owned()));
                }
                // A socket left behind by an earlier VMM: refuse if someone still listens.
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(serial_err(
                        path,
                        "another process is listening on it".to_owned(),
                    ));
                }
                let _ = std::fs::remove_file(path);
            }
            let listener = UnixListener::bind(path).map_err(|e| serial_err(path, e.to_string()))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| serial_err(path, e.to_string()))?;
            let conn: SharedConnection = Arc::new(Mutex::new(None));
            Console {
                output: SerialOutput::socket(conn.clone()).with_marker(marker),
                input: Some(InputSource::Socket {
                    listener,
                    conn,
                    reader: None,
                }),
                raw_terminal: false,
                socket_path: Some(SocketPath(path.clone())),
            }
        }
        SerialConfig::Off => Console {
            output: SerialOutput::discard().with_marker(marker),
            input: None,
            raw_terminal: false,
            socket_path: None,
        },
    })
}

/// Start-up profile at debug level: where the time to the first guest instruction goes.
fn step(what: &str) {
    tracing::debug!(target: "boot_marker", "{what} at {:.3} ms", crate::boot_marker::elapsed_ms());
}

fn insert_pio(
    pio: &Bus,
    dev: Arc<Mutex<dyn crate::bus::BusDevice>>,
    port: u16,
    len: u16,
) -> Result<(), Error> {
    pio.insert(dev, u64::from(port), u64::from(len))?;
    Ok(())
}

impl Vmm {
    /// Creates the VM, loads the kernel, and sets up every device and vCPU.
    pub fn new(config: &VmConfig) -> Result<Self, Error> {
        // Everything the user can get wrong is checked before KVM is touched, so those
        // errors come out the same (status 2) on any host.
        config.validate()?;
        let filters = VmFilters::build(config.seccomp, &Needs::for_config(config))?;
        let mut blocks = Vec::with_capacity(config.disks.len());
        for disk in &config.disks {
            blocks.push(Arc::new(Mutex::new(Block::new(disk)?)));
        }
        let console = console_for(config)?;
        // Also before KVM: a missing TAP, its permissions or a missing passt are the user's.
        let nets = config
            .net
            .iter()
            .enumerate()
            .map(|(i, n)| crate::net::open(n, i))
            .collect::<Result<Vec<_>, _>>()?;
        // Shares, Ignition and the API socket: checked and opened before KVM, like disks.
        let mut extra = ExtraDevices::prepare(config)?;
        let mem_size = config.memory_bytes();
        let mem = memory::create_guest_memory(mem_size)?;
        boot::check_kernel(&config.kernel)?;
        step("configuration checked");

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = create_vm(&kvm, config.cpus, &mem)?;
        step("VM, memory, irqchip and PIT created");
        let entry: EntryPoint = boot::prepare_boot(
            &mem,
            &config.kernel,
            config.initrd.as_deref(),
            &config.cmdline,
            mem_size,
        )?;
        acpi::write_acpi_tables(&mem, config.cpus)?;
        mptable::write_mptable(&mem, config.cpus)?;
        step("kernel and tables loaded");

        let (exit, exit_rx) = ExitNotifier::new();
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let mut event_loop = DeviceEventLoop::new().map_err(Error::EventLoop)?;

        // Legacy devices.
        let space_evt = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::EventLoop(e.to_string()))?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(
            LegacyIrq::new(&vm, layout::SERIAL_IRQ)?,
            console.output.with_tap(extra.console_tap()),
            space_evt
                .try_clone()
                .map_err(|e| Error::EventLoop(e.to_string()))?,
        )));
        step("serial irqfd registered");
        insert_pio(&pio, serial.clone(), ports::COM1, ports::COM1_LEN)?;
        insert_pio(
            &pio,
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
            ports::I8042_DATA,
            5,
        )?;
        insert_pio(
            &pio,
            Arc::new(Mutex::new(Cmos::new())),
            ports::CMOS_INDEX,
            2,
        )?;
        insert_pio(
            &pio,
            Arc::new(Mutex::new(DebugPort::new())),
            ports::DEBUG_PORT,
            1,
        )?;
        insert_pio(
            &pio,
            Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
            ports::DEBUG_EXIT,
            1,
        )?;
        insert_pio(
            &pio,
            Arc::new(Mutex::new(AcpiPm::new(exit.clone()))),
            ports::ACPI_SLEEP_CONTROL,
            ports::ACPI_PM_LEN,
        )?;
        if let Some(source) = console.input {
            event_loop.add(Box::new(SerialInput::new(
                serial.clone(),
                source,
                space_evt,
                exit.clone(),
            )));
        }

        // PCI and virtio-blk.
        let pci = Arc::new(Mutex::new(PciRoot::new(mmio.clone())));
        insert_pio(
            &pio,
            Arc::new(Mutex::new(PciConfigIo::new(pci.clone()))),
            ports::PCI_CONFIG_ADDRESS,
            ports::PCI_CONFIG_LEN,
        )?;
        mmio.insert(
            Arc::new(Mutex::new(PciConfigMmio::new(pci.clone()))),
            layout::PCI_ECAM_START,
            layout::PCI_ECAM_SIZE,
        )?;
        let router: Arc<dyn MsiRouter> = Arc::new(KvmMsiRouter::new(vm.clone()));
        let notify: Arc<dyn NotifyRegistrar> = vm.clone();
        for (disk, block) in config.disks.iter().zip(&blocks) {
            let queue_evt = EventFd::new(EFD_NONBLOCK).map_err(TransportError::EventFd)?;
            let handler_evt = queue_evt.try_clone().map_err(TransportError::EventFd)?;
            let transport = VirtioPciDevice::new(
                block.clone(),
                vec![queue_evt],
                mem.clone(),
                router.clone(),
                notify.clone(),
            )?;
            let slot = lock(&pci).add_device(Arc::new(Mutex::new(transport)))?;
            tracing::info!(
                "disk {} on PCI 00:{slot:02x}.0 ({} sectors{})",
                disk.path.display(),
                lock(block).disk().sectors(),
                if disk.readonly { ", read-only" } else { "" }
            );
            event_loop.add(Box::new(BlockEventHandler::new(block.clone(), handler_evt)));
        }
        let disks = blocks;
        let mut net_guards = Vec::new();
        for (i, opened) in nets.into_iter().enumerate() {
            net_guards.extend(crate::virtio::net::attach(
                i,
                opened,
                &mem,
                &router,
                &notify,
                &pci,
                &mut event_loop,
            )?);
        }
        extra.attach(vmm_devices::Platform {
            vm: &vm,
            mem: &mem,
            pio: &pio,
            pci: &pci,
            router: &router,
            notify: &notify,
            event_loop: &mut event_loop,
            exit: &exit,
            serial: &serial,
            config,
            disks: &disks,
        })?;

        step("devices ready");
        // vCPUs.
        let mut vcpus = Vec::with_capacity(usize::from(config.cpus));
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|source| VcpuError::Cpuid { id: 0, source })?;
        for id in 0..config.cpus {
            vcpus.push(Vcpu::new(
                &cpuid,
                &vm,
                id,
                config.cpus,
                pio.clone(),
                mmio.clone(),
                exit.clone(),
            )?);
        }
        if let Some(bsp) = vcpus.first() {
            bsp.configure_bsp(&mem, entry)?;
        }

        step("vCPUs ready");
        let terminal = if console.raw_terminal {
            RawTerminal::enable().map_err(Error::Terminal)?
        } else {
            None
        };
        Ok(Vmm {
            vcpus,
            event_loop: Some(event_loop),
            disks,
            exit,
            exit_rx,
            terminal,
            extra,
            _vm: vm,
            _mem: mem,
            _socket_path: console.socket_path,
            _net_guards: net_guards,
            filters,
            seccomp: config.seccomp,
        })
    }

    /// Starts the device thread, the vCPUs and the API, installs every thread's seccomp
    /// filter, and waits until the VM ends.
    pub fn run(mut self) -> Result<VmExit, Error> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let start = |kind| ThreadStart {
            filter: self.filters.get(kind),
            ready: ready_tx.clone(),
        };
        // The vCPUs enter the guest only once every filter, the main thread's too, is in place.
        let go = Arc::new(Barrier::new(self.vcpus.len() + 1));
        if let Some(event_loop) = self.event_loop.take() {
            event_loop
                .spawn(self.exit.clone(), start(ThreadKind::Io))
                .map_err(|e| Error::EventLoop(e.to_string()))?;
        }
        for vcpu in self.vcpus.drain(..) {
            vcpu.spawn(start(ThreadKind::Vcpu), go.clone())?;
        }
        self.extra.start_api(start(ThreadKind::Api))?;
        // Every thread drops its sender once it has reported, so this ends with the last one.
        drop(ready_tx);
        for installed in ready_rx {
            installed?;
        }
        seccomp::install(self.filters.get(ThreadKind::Main).as_ref())?;
        if self.filters.get(ThreadKind::Main).is_some() {
            tracing::debug!("seccomp filters installed ({})", self.seccomp);
        }
        go.wait();
        let exit = vmm_devices::wait_for_exit(&self.exit_rx, &self.extra);
        for disk in &self.disks {
            let d = lock(disk);
            if let Err(e) = d.flush() {
                tracing::warn!(
                    "disk {}: final flush failed: {e}",
                    d.disk().path().display()
                );
            }
        }
        drop(self.terminal.take());
        Ok(exit)
    }
}
