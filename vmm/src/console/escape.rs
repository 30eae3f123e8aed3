//! The console escape sequence: Ctrl-A then `x` stops the VM; Ctrl-A Ctrl-A sends one Ctrl-A;
//! Ctrl-A followed by anything else sends both bytes (the same keys as QEMU's `-serial stdio`).

pub const ESCAPE_PREFIX: u8 = 0x01;
pub const ESCAPE_QUIT: u8 = b'x';

#[derive(Default)]
pub struct EscapeFilter {
    after_prefix: bool,
}

impl EscapeFilter {
    /// Copies `input` to `out` minus escape sequences. Returns true when quit was typed
    /// (bytes after it are dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.after_prefix {
                self.after_prefix = false;
                match b {
                    ESCAPE_QUIT | b'X' => return true,
                    ESCAPE_PREFIX => out.push(ESCAPE_PREFIX),
                    other => out.extend_from_slice(&[ESCAPE_PREFIX, other]),
                }
            } else if b == ESCAPE_PREFIX {
                self.after_prefix = true;
            } else {
                out.push(b);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass() {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        assert!(!f.feed(b"ls -l\r", &mut out));
        assert_eq!(out, b"ls -l\r");
    }

    #[test]
    fn quit_across_reads() {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        assert!(!f.feed(b"a\x01", &mut out));
        assert!(f.feed(b"x tail", &mut out));
        assert_eq!(out, b"a");
    }

    #[test]
    fn literal_prefix_and_other_keys() {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        assert!(!f.feed(b"\x01\x01\x01c", &mut out));
        assert_eq!(out, b"\x01\x01c");
    }
}
