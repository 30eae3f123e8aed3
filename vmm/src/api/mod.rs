//! The control API on `--api-socket`: one JSON object per line each way (docs/vmm.md, "API
//! socket"). [`protocol`] is the pure request/reply layer; [`server`] the `vmm-api` threads.

pub mod protocol;
pub mod server;

pub use server::{ApiContext, ApiServer};
