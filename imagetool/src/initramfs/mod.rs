//! Reading a Linux initramfs the way the kernel does: a sequence of newc cpio archives, each
//! plain or compressed, separated by NUL padding (`initrd a.cpio.gz,oem.cpio.gz` concatenates
//! them). Everything streams: no archive or member is held in memory.

mod format;
mod members;
mod peek;
mod walk;

pub use format::Format;
pub use walk::{Entry, EntryKind, Segment, Visit, WalkError, WalkSummary, normalize_name, walk};
