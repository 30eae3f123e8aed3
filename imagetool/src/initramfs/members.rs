use std::io::{self, Read};

use super::format::Format;
use super::peek::PeekReader;

/// The decompressed content of consecutive compressed members of one format, read as one stream.
/// Like the kernel, a cpio archive may span member boundaries (multi-member gzip, several zstd
/// frames); the stream ends where the raw input stops holding another member of the same format,
/// leaving the raw reader positioned just after the last member.
pub struct Members<'a, R: Read> {
    format: Format,
    state: State<'a, R>,
    members: u64,
}

enum State<'a, R: Read> {
    Between(&'a mut PeekReader<R>),
    Gzip(flate2::bufread::GzDecoder<&'a mut PeekReader<R>>),
    Xz(liblzma::bufread::XzDecoder<&'a mut PeekReader<R>>),
    Zstd(zstd::stream::read::Decoder<'static, &'a mut PeekReader<R>>),
    /// Only while switching states, or after an error left no reader to go back to.
    Gone,
}

impl<'a, R: Read> Members<'a, R> {
    /// `raw` must be positioned at the first member; `format` must be a supported compression.
    pub fn new(format: Format, raw: &'a mut PeekReader<R>) -> Self {
        debug_assert!(format.is_supported_compression());
        Self {
            format,
            state: State::Between(raw),
            members: 0,
        }
    }

    pub fn members(&self) -> u64 {
        self.members
    }

    fn start_member(&mut self) -> io::Result<bool> {
        let State::Between(raw) = std::mem::replace(&mut self.state, State::Gone) else {
            return Ok(true);
        };
        let head = raw.peek(Format::SNIFF_LEN)?;
        if Format::sniff(head) != Some(self.format) {
            self.state = State::Between(raw);
            return Ok(false);
        }
        self.members += 1;
        self.state = match self.format {
            Format::Gzip => State::Gzip(flate2::bufread::GzDecoder::new(raw)),
            Format::Xz => State::Xz(liblzma::bufread::XzDecoder::new(raw)),
            Format::Zstd => {
                State::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?.single_frame())
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{other} is not supported"),
                ));
            }
        };
        Ok(true)
    }

    fn end_member(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Gone) {
            State::Gzip(d) => State::Between(d.into_inner()),
            State::Xz(d) => State::Between(d.into_inner()),
            State::Zstd(d) => State::Between(d.finish()),
            other => other,
        };
    }
}

impl<R: Read> Read for Members<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match &mut self.state {
                State::Between(_) => {
                    if !self.start_member()? {
                        return Ok(0);
                    }
                    continue;
                }
                State::Gzip(d) => d.read(out)?,
                State::Xz(d) => d.read(out)?,
                State::Zstd(d) => d.read(out)?,
                State::Gone => {
                    return Err(io::Error::other("decompressor was left in an error state"));
                }
            };
            if n > 0 {
                return Ok(n);
            }
            // A member ended; a decoder that stopped short of its end reports an error instead.
            self.end_member();
        }
    }
}
