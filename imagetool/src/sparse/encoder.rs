//! Turns a sequence of data and zero runs into one standard gzip, zstd or raw stream.
//!
//! Data goes through an ordinary compressor. A long run of zeros ends the current gzip member or
//! zstd frame and is written as ready-made members/frames of zeros, one per power of two in the
//! run's length, each compressed once per export and then copied as often as needed. gzip and zstd
//! both define a stream of concatenated members/frames as the concatenation of their contents, so
//! `gunzip -c` and `zstd -dc` return the exact image.

use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::Format;
use super::zeros::zero_slice;

/// Zero runs shorter than this are compressed inline with the data around them: ending a member
/// costs its trailer, a new header and the compressor's dictionary, more than a short run saves.
pub(crate) const INLINE_ZEROS_MAX: u64 = 1 << 20;
/// The smallest ready-made zero member; what is left below it is compressed inline.
const MIN_SHIFT: u32 = 12;
/// The largest ready-made zero member, 16 MiB: about 16 KiB of gzip at deflate's best ratio of
/// ~1030:1 and a few hundred bytes of zstd RLE blocks, and quick to make.
const MAX_SHIFT: u32 = 24;
/// zstd frames of zeros are made at level 1: RLE blocks come out the same at every level.
const ZSTD_ZERO_LEVEL: i32 = 1;

enum State<W: Write> {
    Idle(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// A write failed and took the writer with it; every later call fails.
    Broken,
}

pub(crate) struct StreamEncoder<W: Write> {
    format: Format,
    level: i32,
    state: State<W>,
    zero_members: ZeroMembers,
    /// Whether a complete member/frame is in the output, so that `finish` never leaves an empty
    /// file, which `gunzip` and `zstd -d` reject.
    emitted: bool,
}

impl<W: Write> StreamEncoder<W> {
    /// `level` must already be valid for `format` (see [`Format::level`]).
    pub(crate) fn new(out: W, format: Format, level: i32) -> Self {
        Self {
            format,
            level,
            state: State::Idle(out),
            zero_members: ZeroMembers::new(format),
            emitted: false,
        }
    }

    /// The next bytes of the image.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self.open()? {
            State::Idle(w) => w.write_all(bytes),
            State::Gzip(e) => e.write_all(bytes),
            State::Zstd(e) => e.write_all(bytes),
            State::Broken => Err(broken()),
        }
    }

    /// The next `n` bytes of the image are zeros.
    pub(crate) fn zeros(&mut self, n: u64) -> io::Result<()> {
        if self.format == Format::Raw || n < INLINE_ZEROS_MAX {
            return self.inline_zeros(n);
        }
        self.close()?;
        let State::Idle(w) = &mut self.state else {
            return Err(broken());
        };
        for _ in 0..n >> MAX_SHIFT {
            w.write_all(self.zero_members.get(MAX_SHIFT)?)?;
        }
        for shift in (MIN_SHIFT..MAX_SHIFT).rev() {
            if n & (1 << shift) != 0 {
                w.write_all(self.zero_members.get(shift)?)?;
            }
        }
        self.emitted = true;
        self.inline_zeros(n & ((1 << MIN_SHIFT) - 1))
    }

    /// Writes a complete member/frame made elsewhere (see [`super::trailer`]) as it is.
    pub(crate) fn whole_member(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.close()?;
        let State::Idle(w) = &mut self.state else {
            return Err(broken());
        };
        w.write_all(bytes)?;
        self.emitted = true;
        Ok(())
    }

    /// Ends the stream and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.format != Format::Raw && !self.emitted {
            self.open()?;
        }
        self.close()?;
        match self.state {
            State::Idle(w) => Ok(w),
            _ => Err(broken()),
        }
    }

    fn inline_zeros(&mut self, mut n: u64) -> io::Result<()> {
        let zeros = zero_slice();
        while n > 0 {
            let k = n.min(zeros.len() as u64);
            // `k` is at most the slice length, a usize.
            self.data(&zeros[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    /// Makes sure a member/frame is open (raw streams have none) and returns the state.
    fn open(&mut self) -> io::Result<&mut State<W>> {
        if matches!(self.state, State::Idle(_)) && self.format != Format::Raw {
            self.state = match (
                std::mem::replace(&mut self.state, State::Broken),
                self.format,
            ) {
                (State::Idle(w), Format::Gzip) => {
                    State::Gzip(GzEncoder::new(w, gzip_level(self.level)))
                }
                (State::Idle(w), Format::Zstd) => State::Zstd(zstd_encoder(w, self.level)?),
                (other, _) => other,
            };
        }
        Ok(&mut self.state)
    }

    /// Ends the open member/frame, if any.
    fn close(&mut self) -> io::Result<()> {
        let w = match std::mem::replace(&mut self.state, State::Broken) {
            State::Idle(w) => w,
            State::Gzip(e) => e.finish()?,
            State::Zstd(e) => e.finish()?,
            State::Broken => return Err(broken()),
        };
        if self.format != Format::Raw {
            self.emitted = true;
        }
        self.state = State::Idle(w);
        Ok(())
    }
}

fn broken() -> io::Error {
    io::Error::other("an earlier write to the output failed")
}

fn gzip_level(level: i32) -> Compression {
    Compression::new(u32::try_from(level).unwrap_or(6))
}

/// A zstd frame writer with a content checksum, so `zstd -d` and import verify every frame.
fn zstd_encoder<W: Write>(
    w: W,
    level: i32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut e = zstd::stream::write::Encoder::new(w, level)?;
    e.include_checksum(true)?;
    Ok(e)
}

/// Ready-made members/frames of 2^shift zeros, made on first use.
struct ZeroMembers {
    format: Format,
    cache: Vec<Option<Vec<u8>>>,
}

impl ZeroMembers {
    fn new(format: Format) -> Self {
        Self {
            format,
            cache: vec![None; (MAX_SHIFT - MIN_SHIFT + 1) as usize],
        }
    }

    fn get(&mut self, shift: u32) -> io::Result<&[u8]> {
        let slot = &mut self.cache[(shift - MIN_SHIFT) as usize];
        if slot.is_none() {
            *slot = Some(make_zero_member(self.format, 1 << shift)?);
        }
        Ok(slot.as_deref().unwrap_or_default())
    }
}

fn make_zero_member(format: Format, len: u64) -> io::Result<Vec<u8>> {
    let zeros = zero_slice();
    let mut left = len;
    let out = match format {
        Format::Gzip => {
            // Level 6 reaches deflate's best ratio on zeros (258-byte matches) as level 9 does, faster.
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            while left > 0 {
                let k = left.min(zeros.len() as u64);
                e.write_all(&zeros[..k as usize])?;
                left -= k;
            }
            e.finish()?
        }
        Format::Zstd => {
            let mut e = zstd_encoder(Vec::new(), ZSTD_ZERO_LEVEL)?;
            // The size in the frame header lets `zstd -l` and other readers see it up front.
            e.set_pledged_src_size(Some(len))?;
            while left > 0 {
                let k = left.min(zeros.len() as u64);
                e.write_all(&zeros[..k as usize])?;
                left -= k;
            }
            e.finish()?
        }
        Format::Raw => return Err(io::Error::other("raw streams have no zero members")),
    };
    tracing::debug!("made a {format} member of {len} zeros: {} bytes", out.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn decode(format: Format, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match format {
            Format::Gzip => flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap(),
            Format::Zstd => zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap(),
            Format::Raw => {
                out.extend_from_slice(bytes);
                0
            }
        };
        out
    }

    /// Encodes alternating data and zero runs and checks the decoded stream byte for byte.
    fn round_trip(format: Format, runs: &[(bool, usize)]) -> usize {
        let mut enc = StreamEncoder::new(Vec::new(), format, format.level(None).unwrap());
        let mut expected = Vec::new();
        for (i, &(zero, len)) in runs.iter().enumerate() {
            if zero {
                enc.zeros(len as u64).unwrap();
                expected.resize(expected.len() + len, 0);
            } else {
                let data: Vec<u8> = (0..len).map(|j| (j * 31 + i * 7) as u8 | 1).collect();
                enc.data(&data).unwrap();
                expected.extend_from_slice(&data);
            }
        }
        let out = enc.finish().unwrap();
        let got = decode(format, &out);
        assert_eq!(got.len(), expected.len(), "{format} {runs:?}");
        assert!(got == expected, "{format} {runs:?}: content differs");
        out.len()
    }

    #[test]
    fn zero_runs_of_awkward_lengths_decode_exactly() {
        let sizes = [
            1,
            4095,
            4096,
            (INLINE_ZEROS_MAX - 1) as usize,
            INLINE_ZEROS_MAX as usize,
            INLINE_ZEROS_MAX as usize + 4097,
            (1 << MAX_SHIFT) + (1 << MIN_SHIFT) + 3,
            3 << MAX_SHIFT,
        ];
        for format in [Format::Gzip, Format::Zstd, Format::Raw] {
            for &z in &sizes {
                round_trip(format, &[(true, z)]);
                round_trip(format, &[(false, 100), (true, z), (false, 5000)]);
                round_trip(format, &[(false, 1), (true, z), (true, z), (false, 1)]);
            }
        }
    }

    #[test]
    fn empty_streams_are_valid_members() {
        for format in [Format::Gzip, Format::Zstd] {
            let n = round_trip(format, &[]);
            assert!(
                n > 0,
                "{format}: an empty stream must still be one valid member"
            );
        }
        assert_eq!(round_trip(Format::Raw, &[]), 0);
    }

    #[test]
    fn zero_members_are_compact() {
        // 64 MiB of zeros: four 16 MiB members at ~1030:1 for gzip, far less for zstd.
        let gz = round_trip(Format::Gzip, &[(true, 64 << 20)]);
        assert!(gz < (64 << 20) / 1000, "gzip zeros took {gz} bytes");
        let zst = round_trip(Format::Zstd, &[(true, 64 << 20)]);
        assert!(zst < 8192, "zstd zeros took {zst} bytes");
    }
}
