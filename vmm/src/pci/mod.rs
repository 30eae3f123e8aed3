//! PCI: one segment, bus 0, reached through ports 0xcf8/0xcfc and ECAM.

pub mod bus;
pub mod config_space;
pub mod host_bridge;
pub mod msix;

pub use bus::{PciConfigIo, PciConfigMmio, PciRoot};
pub use config_space::{BarInfo, PciConfigSpace, PciHeader};

/// A PCI function on bus 0.
pub trait PciDevice: Send {
    fn config_space(&self) -> &PciConfigSpace;
    fn config_space_mut(&mut self) -> &mut PciConfigSpace;

    /// Reads configuration dword `reg`.
    fn config_read(&mut self, reg: usize) -> u32 {
        self.config_space().read_reg(reg)
    }

    /// Writes `data` at configuration byte `offset`.
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config_space_mut().write(offset, data);
    }

    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}

    /// BAR `bar` is now decoded at `addr` (None: no longer decoded). Devices with ioeventfds
    /// move them here.
    fn bar_mapped(&mut self, _bar: usize, _addr: Option<u64>) {}
}
