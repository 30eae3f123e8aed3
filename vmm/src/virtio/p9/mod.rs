//! virtio-9p (9P2000.L) shares, served by the p9 crate behind this VMM's own checks.
//!
//! - [`device`]: the virtio device (features, mount tag in the config space, the queue);
//! - [`message`]: the pure request parser (malformed frames are answered with Rlerror);
//! - [`confine`]: keeps every name a single component, so the guest stays in the share;
//! - [`readonly`]: the pure read-only filter (EROFS);
//! - [`server`]: the p9 server behind those checks, with a fid limit.

pub mod confine;
pub mod device;
pub mod message;
pub mod readonly;
pub mod server;

pub use device::{P9, ShareError};
