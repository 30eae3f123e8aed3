//! Per-thread seccomp filters (issue 7): each thread kind may make only the system calls it
//! needs once the guest runs ([`filters`] lists them, docs/vmm.md explains them).
//!
//! Filters are compiled before KVM is opened (a compile error is a VMM bug, reported before
//! anything runs) and installed by each thread on itself after its set-up: `vmm-io`, each
//! `vcpuN` and the `vmm-api` acceptor at their start, the main thread after it has spawned them
//! all (a filter is inherited by threads created later, and stacked filters all apply, so the
//! main thread must not install its own before spawning). vCPUs enter the guest only after
//! every filter is in place ([`crate::vmm::Vmm::run`]).
//!
//! `on` kills the whole process (SIGSYS) on a call outside the list, `log` lets it through and
//! has the kernel log it (SECCOMP_RET_LOG, audit type 1326), `off` installs nothing.

pub mod filters;

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::Sender;

use seccompiler::{BpfProgram, SeccompAction};
use serde::{Deserialize, Serialize};

use crate::config::net::NetBackendConfig;
use crate::config::{ConfigError, VmConfig};

/// What `--seccomp` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// A system call outside the thread's list kills the process with SIGSYS.
    #[default]
    On,
    /// Calls outside the list are allowed and logged by the kernel.
    Log,
    /// No filters.
    Off,
}

impl FromStr for SeccompMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            _ => Err(ConfigError::Syntax {
                option: "seccomp",
                input: s.to_owned(),
                why: "expected on, log or off".to_owned(),
            }),
        }
    }
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeccompMode::On => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        })
    }
}

/// The thread kinds, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// `vmm`: waits for the exit request, then flushes disks and cleans up.
    Main,
    /// `vcpuN`: KVM_RUN and device emulation on exits.
    Vcpu,
    /// `vmm-io`: the device event loop.
    Io,
    /// `vmm-api`: the API socket's threads.
    Api,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Io,
        ThreadKind::Api,
    ];
}

/// The parts of a configuration that widen a filter; without them the calls stay forbidden.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// 9p shares: `vmm-io` may open, create and change files (p9 confines them to the shares).
    pub shares: bool,
    /// A NIC over a TAP: vCPUs may set its offloads (TUNSETOFFLOAD) when the guest's driver
    /// starts or resets.
    pub tap: bool,
    /// passt: the main thread may kill and reap it at exit.
    pub passt: bool,
}

impl Needs {
    pub fn for_config(config: &VmConfig) -> Self {
        Needs {
            shares: !config.shares.is_empty(),
            tap: config
                .net
                .iter()
                .any(|n| matches!(n.backend, NetBackendConfig::Tap { .. })),
            passt: config
                .net
                .iter()
                .any(|n| matches!(n.backend, NetBackendConfig::User { .. })),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter of the {kind:?} thread: {source}")]
    Build {
        kind: ThreadKind,
        source: seccompiler::BackendError,
    },
    #[error(
        "cannot install the seccomp filter of the {kind:?} thread: {source} (does this kernel have CONFIG_SECCOMP_FILTER? --seccomp off runs without)"
    )]
    Install {
        kind: ThreadKind,
        source: seccompiler::Error,
    },
}

/// One thread kind's compiled filter: the allow-list, and for kinds that spawn threads a second
/// program answering clone3 with ENOSYS, so glibc falls back to clone, whose flags the
/// allow-list can check (clone3 passes them in memory, out of a filter's reach).
#[derive(Clone, Debug)]
pub struct ThreadFilter {
    kind: ThreadKind,
    programs: Vec<BpfProgram>,
}

impl ThreadFilter {
    /// Compiles the filter of `kind`; None when `mode` is off.
    pub fn build(
        kind: ThreadKind,
        mode: SeccompMode,
        needs: &Needs,
    ) -> Result<Option<Self>, SeccompError> {
        let mismatch = match mode {
            SeccompMode::On => SeccompAction::KillProcess,
            SeccompMode::Log => SeccompAction::Log,
            SeccompMode::Off => return Ok(None),
        };
        let build = |source| SeccompError::Build { kind, source };
        let mut programs = Vec::new();
        // Installing a program calls prctl(PR_SET_NO_NEW_PRIVS), which the allow-list
        // forbids: it goes last.
        if kind == ThreadKind::Api {
            programs.push(filters::clone3_enosys().map_err(build)?);
        }
        programs.push(filters::allow_list(kind, needs, mismatch).map_err(build)?);
        Ok(Some(ThreadFilter { kind, programs }))
    }

    pub fn kind(&self) -> ThreadKind {
        self.kind
    }

    /// Installs the filter on the calling thread (and, by inheritance, on threads it creates
    /// afterwards). Allocates nothing, so it may run in a child right after fork.
    pub fn install(&self) -> Result<(), SeccompError> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
                kind: self.kind,
                source,
            })?;
        }
        Ok(())
    }
}

/// Every thread kind's filter for one VM, compiled up front.
#[derive(Clone, Debug, Default)]
pub struct VmFilters {
    main: Option<ThreadFilter>,
    vcpu: Option<ThreadFilter>,
    io: Option<ThreadFilter>,
    api: Option<ThreadFilter>,
}

impl VmFilters {
    pub fn build(mode: SeccompMode, needs: &Needs) -> Result<Self, SeccompError> {
        Ok(VmFilters {
            main: ThreadFilter::build(ThreadKind::Main, mode, needs)?,
            vcpu: ThreadFilter::build(ThreadKind::Vcpu, mode, needs)?,
            io: ThreadFilter::build(ThreadKind::Io, mode, needs)?,
            api: ThreadFilter::build(ThreadKind::Api, mode, needs)?,
        })
    }

    /// The filter a thread of `kind` installs; None with `--seccomp off`.
    pub fn get(&self, kind: ThreadKind) -> Option<ThreadFilter> {
        match kind {
            ThreadKind::Main => self.main.clone(),
            ThreadKind::Vcpu => self.vcpu.clone(),
            ThreadKind::Io => self.io.clone(),
            ThreadKind::Api => self.api.clone(),
        }
    }
}

/// What a spawned thread needs to install its filter and tell the main thread it did.
pub struct ThreadStart {
    pub filter: Option<ThreadFilter>,
    pub ready: Sender<Result<(), SeccompError>>,
}

impl ThreadStart {
    /// Installs the filter on the calling thread and reports the result; false if it failed
    /// (the thread must then stop: the main thread ends the VMM with the error).
    pub fn install(self) -> bool {
        let result = install(self.filter.as_ref());
        let ok = result.is_ok();
        // The receiver only goes away when the VMM is ending anyway.
        let _ = self.ready.send(result);
        ok
    }
}

/// Installs `filter` if there is one (`--seccomp off` passes None).
pub fn install(filter: Option<&ThreadFilter>) -> Result<(), SeccompError> {
    match filter {
        Some(f) => f.install(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for (text, mode) in [
            ("on", SeccompMode::On),
            ("log", SeccompMode::Log),
            ("off", SeccompMode::Off),
        ] {
            assert_eq!(text.parse::<SeccompMode>().unwrap(), mode);
            assert_eq!(mode.to_string(), text);
        }
        let e = "yes".parse::<SeccompMode>().unwrap_err().to_string();
        assert!(e.contains("expected on, log or off"), "{e}");
        assert_eq!(SeccompMode::default(), SeccompMode::On);
    }

    #[test]
    fn every_kind_compiles_in_every_mode() {
        let all = Needs {
            shares: true,
            tap: true,
            passt: true,
        };
        for needs in [Needs::default(), all] {
            for kind in ThreadKind::ALL {
                for mode in [SeccompMode::On, SeccompMode::Log] {
                    let f = ThreadFilter::build(kind, mode, &needs).unwrap().unwrap();
                    assert!(f.programs.iter().all(|p| !p.is_empty()));
                    assert_eq!(
                        f.programs.len(),
                        if kind == ThreadKind::Api { 2 } else { 1 }
                    );
                }
                assert!(
                    ThreadFilter::build(kind, SeccompMode::Off, &needs)
                        .unwrap()
                        .is_none()
                );
            }
        }
    }
}
