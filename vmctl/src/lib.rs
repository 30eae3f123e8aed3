//! vmctl: CoreOS-family test clusters from one YAML file, on the project's KVM VMM.
//!
//! [`cluster`] reads the file, [`store`] keeps the shared images, [`node`] makes and runs each
//! VM, [`net`] the bridge, TAPs and dnsmasq, [`systemd`] the units; [`vmm_args`] and [`api`] are
//! all vmctl knows of the VMM.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod cmdline;
pub mod host;
pub mod net;
pub mod node;
pub mod paths;
pub mod state;
pub mod store;
pub mod systemd;
pub mod vmm_args;
pub mod vmm_binary;
