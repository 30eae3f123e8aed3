//! MSI-X: the capability, the vector table and the pending-bit array. Each vector is backed by
//! an irqfd whose KVM route follows what the guest programs in the table; masked vectors only
//! latch their pending bit and fire when unmasked, as the spec requires.

use std::sync::Arc;

use crate::interrupt::{InterruptError, MsiMessage, MsiRouter, MsiVector};

pub const MSIX_CAP_ID: u8 = 0x11;
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
const VECTOR_CTL_MASKED: u32 = 1;
/// Offset of the message control word within the capability.
pub const MSIX_CONTROL_OFFSET: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableEntry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Default for TableEntry {
    fn default() -> Self {
        // Vectors come out of reset masked.
        TableEntry {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            control: VECTOR_CTL_MASKED,
        }
    }
}

impl TableEntry {
    fn masked(&self) -> bool {
        self.control & VECTOR_CTL_MASKED != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage {
            addr_lo: self.addr_lo,
            addr_hi: self.addr_hi,
            data: self.data,
        }
    }
}

pub struct MsixConfig {
    table: Vec<TableEntry>,
    pending: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    vectors: Vec<MsiVector>,
    router: Arc<dyn MsiRouter>,
}

impl MsixConfig {
    pub fn new(count: u16, router: Arc<dyn MsiRouter>) -> Result<Self, InterruptError> {
        let vectors = router.allocate_vectors(usize::from(count))?;
        Ok(MsixConfig {
            table: vec![TableEntry::default(); usize::from(count)],
            pending: vec![false; usize::from(count)],
            enabled: false,
            function_masked: false,
            vectors,
            router,
        })
    }

    pub fn vector_count(&self) -> u16 {
        self.table.len() as u16
    }

    /// The capability bytes and their write mask: table and PBA location as (BAR, offset).
    pub fn capability(&self, table: (u8, u32), pba: (u8, u32)) -> ([u8; 12], [u8; 12]) {
        let mut cap = [0u8; 12];
        cap[0] = MSIX_CAP_ID;
        cap[2..4].copy_from_slice(&(self.vector_count() - 1).to_le_bytes());
        cap[4..8].copy_from_slice(&(table.1 | u32::from(table.0)).to_le_bytes());
        cap[8..12].copy_from_slice(&(pba.1 | u32::from(pba.0)).to_le_bytes());
        let mut mask = [0u8; 12];
        mask[3] = ((MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8) as u8;
        (cap, mask)
    }

    #[cfg(test)]
    pub fn irqfd(&self, v: usize) -> &vmm_sys_util::eventfd::EventFd {
        &self.vectors[v].irqfd
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn active(&self, v: usize) -> bool {
        self.enabled && !self.function_masked && !self.table[v].masked()
    }

    /// Routes and fires vector `v` if it just became deliverable.
    fn refresh(&mut self, v: usize) {
        if !self.active(v) {
            return;
        }
        let gsi = self.vectors[v].gsi;
        if let Err(e) = self.router.set_route(gsi, self.table[v].message()) {
            tracing::warn!("MSI-X vector {v}: {e}");
            return;
        }
        if std::mem::take(&mut self.pending[v])
            && let Err(e) = self.vectors[v].trigger()
        {
            tracing::warn!("MSI-X vector {v}: {e}");
        }
    }

    /// The guest wrote the message control word.
    pub fn set_control(&mut self, control: u16) {
        self.enabled = control & MSIX_ENABLE != 0;
        self.function_masked = control & MSIX_FUNCTION_MASK != 0;
        for v in 0..self.table.len() {
            self.refresh(v);
        }
    }

    pub fn control_bits(&self) -> u16 {
        let mut c = self.vector_count() - 1;
        if self.enabled {
            c |= MSIX_ENABLE;
        }
        if self.function_masked {
            c |= MSIX_FUNCTION_MASK;
        }
        c
    }

    /// Table reads: aligned 4- or 8-byte accesses; anything else reads as zero.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let entry = (offset / MSIX_TABLE_ENTRY_SIZE) as usize;
        let Some(e) = self.table.get(entry) else {
            return;
        };
        let field = offset % MSIX_TABLE_ENTRY_SIZE;
        let words = [e.addr_lo, e.addr_hi, e.data, e.control];
        match (data.len(), field) {
            (4, 0 | 4 | 8 | 12) => data.copy_from_slice(&words[field as usize / 4].to_le_bytes()),
            (8, 0 | 8) => {
                let i = field as usize / 4;
                data[0..4].copy_from_slice(&words[i].to_le_bytes());
                data[4..8].copy_from_slice(&words[i + 1].to_le_bytes());
            }
            _ => {}
        }
    }

    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let entry = (offset / MSIX_TABLE_ENTRY_SIZE) as usize;
        if entry >= self.table.len() {
            return;
        }
        let field = offset % MSIX_TABLE_ENTRY_SIZE;
        let mut dwords: Vec<(u64, u32)> = Vec::with_capacity(2);
        match (data.len(), field) {
            (4, 0 | 4 | 8 | 12) => dwords.push((
                field,
                u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
            )),
            (8, 0 | 8) => {
                dwords.push((
                    field,
                    u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
                ));
                dwords.push((
                    field + 4,
                    u32::from_le_bytes([data[4], data[5], data[6], data[7]]),
                ));
            }
            _ => return,
        }
        let e = &mut self.table[entry];
        for (f, v) in dwords {
            match f {
                0 => e.addr_lo = v,
                4 => e.addr_hi = v,
                8 => e.data = v,
                _ => e.control = v & VECTOR_CTL_MASKED,
            }
        }
        self.refresh(entry);
    }

    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let first = (offset as usize + i) * 8;
            let mut byte = 0u8;
            for bit in 0..8 {
                if self.pending.get(first + bit).copied().unwrap_or(false) {
                    byte |= 1 << bit;
                }
            }
            *b = byte;
        }
    }

    /// Raises vector `v`. Returns false when MSI-X is off (nothing can be delivered).
    pub fn trigger(&mut self, v: u16) -> Result<bool, InterruptError> {
        let v = usize::from(v);
        if v >= self.table.len() || !self.enabled {
            return Ok(false);
        }
        if self.function_masked || self.table[v].masked() {
            self.pending[v] = true;
            return Ok(true);
        }
        self.vectors[v].trigger()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::msi::tests::FakeRouter;

    fn setup(count: u16) -> (MsixConfig, Arc<FakeRouter>) {
        let router = Arc::new(FakeRouter::default());
        (MsixConfig::new(count, router.clone()).unwrap(), router)
    }

    fn program(m: &mut MsixConfig, v: u64, data: u32, masked: bool) {
        let base = v * MSIX_TABLE_ENTRY_SIZE;
        m.write_table(base, &0xfee0_0000u32.to_le_bytes());
        m.write_table(base + 4, &0u32.to_le_bytes());
        m.write_table(base + 8, &data.to_le_bytes());
        m.write_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    #[test]
    fn capability_describes_table_and_pba() {
        let (m, _) = setup(3);
        let (cap, mask) = m.capability((0, 0x4000), (0, 0x5000));
        assert_eq!(cap[0], 0x11);
        assert_eq!(u16::from_le_bytes([cap[2], cap[3]]), 2);
        assert_eq!(u32::from_le_bytes(cap[4..8].try_into().unwrap()), 0x4000);
        assert_eq!(u32::from_le_bytes(cap[8..12].try_into().unwrap()), 0x5000);
        assert_eq!(mask[3], 0xc0);
    }

    #[test]
    fn unmasked_vector_gets_a_route_and_fires() {
        let (mut m, router) = setup(2);
        m.set_control(MSIX_ENABLE);
        program(&mut m, 1, 0x41, false);
        let gsi = m.vectors[1].gsi;
        assert_eq!(router.routes.lock().unwrap()[&gsi].data, 0x41);
        assert!(m.trigger(1).unwrap());
        assert_eq!(m.vectors[1].irqfd.read().unwrap(), 1);
        let mut buf = [0u8; 4];
        m.read_table(16 + 8, &mut buf);
        assert_eq!(u32::from_le_bytes(buf), 0x41);
    }

    #[test]
    fn masked_vector_latches_pending_and_fires_on_unmask() {
        let (mut m, _) = setup(1);
        m.set_control(MSIX_ENABLE);
        program(&mut m, 0, 0x42, true);
        assert!(m.trigger(0).unwrap());
        assert!(
            m.vectors[0].irqfd.read().is_err(),
            "nothing delivered while masked"
        );
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 1);
        m.write_table(12, &0u32.to_le_bytes());
        assert_eq!(m.vectors[0].irqfd.read().unwrap(), 1);
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
    }

    #[test]
    fn function_mask_and_disable() {
        let (mut m, _) = setup(1);
        program(&mut m, 0, 0x43, false);
        assert!(!m.trigger(0).unwrap(), "MSI-X disabled");
        m.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(m.trigger(0).unwrap());
        assert!(m.vectors[0].irqfd.read().is_err());
        m.set_control(MSIX_ENABLE);
        assert_eq!(m.vectors[0].irqfd.read().unwrap(), 1);
        assert_eq!(m.control_bits(), MSIX_ENABLE);
    }

    #[test]
    fn out_of_range_accesses_are_ignored() {
        let (mut m, _) = setup(1);
        m.write_table(16, &[1, 2, 3, 4]);
        m.write_table(2, &[1, 2]);
        let mut buf = [0xffu8; 4];
        m.read_table(64, &mut buf);
        assert_eq!(buf, [0; 4]);
        assert!(!m.trigger(7).unwrap());
    }
}
