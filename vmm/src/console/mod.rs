//! The serial console's host side: where UART output goes, where its input comes from, raw
//! terminal mode and the escape sequence.

pub mod escape;
pub mod input;
pub mod output;
pub mod terminal;

pub use input::SerialInput;
pub use output::SerialOutput;
