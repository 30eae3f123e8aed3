//! imagetool: the images a CoreOS-family VM needs, built lean.
//!
//! - [`extract`]: the shared, read-only `/usr` squashfs pulled out of a PXE initramfs.
//! - [`mkroot`]: sparse ext4 root images.
//! - [`configdrive`]: OpenStack-style config-drive trees for coreos-cloudinit.
//! - [`sparse`]: export and import of disk images that cost what their data costs.
//! - [`inspect`]: what a file is and its key facts.

pub mod atomic;
pub mod configdrive;
pub mod digest;
pub mod ext4;
pub mod extract;
pub mod initramfs;
pub mod inspect;
pub mod kernel;
pub mod mkroot;
pub mod progress;
pub mod size;
pub mod sparse;
pub mod squashfs;
