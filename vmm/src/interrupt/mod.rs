//! Interrupt delivery: KVM GSI routing for MSI(-X) and irqfd-backed lines.
//!
//! The in-kernel IOAPIC/PIC keep KVM's default routing (GSI n -> IOAPIC pin n, and PIC pin n
//! for n < 16); MSI vectors get GSIs from 24 up. Each vector owns an eventfd registered as an
//! irqfd, so raising it from any thread is one `write(2)`.

pub mod legacy;
pub mod msi;

pub use legacy::LegacyIrq;
pub use msi::{KvmMsiRouter, MsiMessage, MsiRouter, MsiVector};

#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    #[error("cannot create an interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("KVM refused irqfd for GSI {gsi}: {source}")]
    Irqfd { gsi: u32, source: kvm_ioctls::Error },
    #[error("KVM refused the GSI routing table: {0}")]
    Routing(kvm_ioctls::Error),
    #[error("no free GSI left for MSI vectors")]
    NoGsi,
    #[error("cannot signal interrupt: {0}")]
    Trigger(std::io::Error),
}
