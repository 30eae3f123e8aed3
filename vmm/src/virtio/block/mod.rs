//! virtio-blk, in the pieces Firecracker keeps apart: the device (features, config space, queue
//! loop), the request parser, the I/O backend, and the event-loop wiring.

pub mod device;
pub mod error_log;
pub mod event_handler;
pub mod io;
pub mod request;

pub use device::Block;
pub use event_handler::BlockEventHandler;
