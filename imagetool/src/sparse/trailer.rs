//! The records that make an imagetool stream check itself: a leader that says "an end record
//! follows" and an end record with the content's length and SHA-256. Without them a stream cut
//! exactly between two gzip members or zstd frames would look complete, and a stream piped
//! straight into `import` (no digest file beside it) would go unchecked.
//!
//! Both records are things stock tools already skip: in gzip, empty members whose header carries
//! an extra field (RFC 1952 2.3.1.1, subfield `IS`); in zstd, skippable frames (RFC 8878 3.1.2).

use flate2::{Compression, GzBuilder};

use super::Format;

/// Names the record format; a different version would be a different mark.
const MARK: &[u8] = b"imagetool-sparse/1";
/// gzip extra subfield id.
const SUBFIELD: [u8; 2] = *b"IS";
/// zstd skippable frame magic (one of the sixteen the format reserves for applications).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Longest record, in bytes: what [`crate::sparse`] keeps of the input's end to find it.
pub(crate) const MAX_RECORD: usize = 160;

/// The record that opens a stream; `None` for raw streams, which have nowhere to put one.
pub(crate) fn leader(format: Format) -> Option<Vec<u8>> {
    record(format, MARK)
}

/// The record that closes a stream.
pub(crate) fn end(format: Format, content_len: u64, sha256: &str) -> Option<Vec<u8>> {
    record(format, &end_payload(content_len, sha256))
}

/// Whether a stream's first bytes are the leader.
pub(crate) fn has_leader(format: Format, head: &[u8]) -> bool {
    leader(format).is_some_and(|l| head.starts_with(&l))
}

/// The length and digest from the end record the stream's last bytes hold, if they hold one.
pub(crate) fn parse_end(format: Format, tail: &[u8]) -> Option<(u64, String)> {
    let prefix = [MARK, b" size="].concat();
    let at = tail.windows(prefix.len()).rposition(|w| w == prefix)?;
    let fields =
        std::str::from_utf8(tail.get(at + prefix.len()..at + end_payload(0, "").len())?).ok()?;
    let (size, sha) = fields.split_once(" sha256=")?;
    let size: u64 = size.parse().ok()?;
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let sha = sha.to_string();
    // Believe it only if the input ends with exactly the record those values make.
    let record = end(format, size, &sha)?;
    tail.ends_with(&record).then_some((size, sha))
}

/// Fixed width, so the record's length does not depend on the values.
fn end_payload(content_len: u64, sha256: &str) -> Vec<u8> {
    let mut p = MARK.to_vec();
    p.extend_from_slice(format!(" size={content_len:020} sha256={sha256:0>64}").as_bytes());
    p
}

fn record(format: Format, payload: &[u8]) -> Option<Vec<u8>> {
    match format {
        Format::Gzip => {
            let mut extra = SUBFIELD.to_vec();
            // Payloads are MARK plus fixed-width fields, far below u16::MAX.
            extra.extend_from_slice(&(payload.len() as u16).to_le_bytes());
            extra.extend_from_slice(payload);
            // Writing to a Vec cannot fail.
            GzBuilder::new()
                .extra(extra)
                .write(Vec::new(), Compression::default())
                .finish()
                .ok()
        }
        Format::Zstd => {
            let mut frame = SKIPPABLE_MAGIC.to_le_bytes().to_vec();
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(payload);
            Some(frame)
        }
        Format::Raw => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const SHA: &str = "2c3e53cc82e8ea46c27411790559b2da612414c5208db3576c3a42ab5e1aefd3";

    #[test]
    fn records_parse_back_and_fit() {
        for format in [Format::Gzip, Format::Zstd] {
            let lead = leader(format).unwrap();
            assert!(has_leader(
                format,
                &[lead.clone(), b"more".to_vec()].concat()
            ));
            assert!(!has_leader(format, &lead[..lead.len() - 1]));
            let rec = end(format, 17_179_869_184, SHA).unwrap();
            assert!(rec.len() <= MAX_RECORD, "{format}: {} bytes", rec.len());
            let tail = [b"earlier bytes".to_vec(), rec.clone()].concat();
            assert_eq!(
                parse_end(format, &tail),
                Some((17_179_869_184, SHA.to_string()))
            );
            // Anything after the record, or a damaged record, means there is no end record.
            assert_eq!(parse_end(format, &[rec.clone(), vec![0]].concat()), None);
            let mark_at = rec.windows(MARK.len()).position(|w| w == MARK).unwrap();
            let mut bad = rec.clone();
            bad[mark_at + 3] ^= 1;
            assert_eq!(parse_end(format, &bad), None);
            assert_eq!(parse_end(format, &rec[1..]), None);
            // A damaged digest parses (zstd frames carry no checksum) as a different digest, which
            // then fails the comparison with the content's.
            let mut bad = rec.clone();
            let last = bad.len() - if format == Format::Gzip { 13 } else { 1 };
            bad[last] = b'x';
            assert_eq!(parse_end(format, &bad), None, "not hex");
        }
        assert!(leader(Format::Raw).is_none());
    }

    #[test]
    fn stock_decoders_skip_the_records() {
        let gz = [
            leader(Format::Gzip).unwrap(),
            end(Format::Gzip, 0, SHA).unwrap(),
        ]
        .concat();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
        let zst = [
            leader(Format::Zstd).unwrap(),
            end(Format::Zstd, 0, SHA).unwrap(),
        ]
        .concat();
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&zst[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
