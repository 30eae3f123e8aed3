//! The initramfs walker over any bytes: plain, concatenated and compressed cpio.
//!
//! Invariants: the summary counts what the visitor saw; segments start in order inside the
//! input; names are normalized; a visitor reading everything gets exactly each entry's size; a
//! visitor reading nothing, or only part, sees the same walk (the walker skips the rest); a
//! visitor that stops after k entries stops the walk there; and a walk that succeeded on plain
//! cpio gives the same entries when the same bytes come gzip-compressed in two members split
//! anywhere, or as a zstd frame.
#![no_main]

use std::io::Write;

use imagetool::initramfs::{Format, Visit, WalkError, WalkSummary, normalize_name, walk};
use libfuzzer_sys::fuzz_target;

#[derive(Clone, Copy)]
enum Reading {
    All,
    None,
    Some(usize),
}

/// (raw name, mode, size, data read) per entry.
type Seen = Vec<(String, u32, u64, Vec<u8>)>;

fn run(
    input: &[u8],
    reading: Reading,
    stop_after: Option<u64>,
) -> (Result<WalkSummary, WalkError>, Seen) {
    let mut seen: Seen = Vec::new();
    let result = walk(input, |e, r| {
        assert_eq!(e.name, normalize_name(&e.raw_name));
        assert!(!e.name.starts_with('/') && !e.name.starts_with("./") && e.name != ".");
        let mut data = Vec::new();
        match reading {
            Reading::All => {
                // Bounded by the input: a header may claim 4 GiB that is not there.
                r.read_to_end(&mut data)?;
            }
            Reading::None => {}
            Reading::Some(n) => {
                let mut part = vec![0u8; n.min(e.size as usize)];
                let got = r.read(&mut part)?;
                data.extend_from_slice(&part[..got]);
            }
        }
        seen.push((e.raw_name.clone(), e.mode, e.size, data));
        Ok(match stop_after {
            Some(k) if seen.len() as u64 >= k => Visit::Stop,
            _ => Visit::Continue,
        })
    });
    (result, seen)
}

fn meta(seen: &Seen) -> Vec<(String, u32, u64)> {
    seen.iter()
        .map(|(n, m, s, _)| (n.clone(), *m, *s))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let (all, seen) = run(input, Reading::All, None);
    if let Ok(summary) = &all {
        assert_eq!(summary.entries, seen.len() as u64);
        assert_eq!(
            summary.segments.iter().map(|s| s.entries).sum::<u64>(),
            summary.entries
        );
        assert!(!summary.segments.is_empty() && !summary.stopped);
        for w in summary.segments.windows(2) {
            assert!(w[0].offset < w[1].offset, "segments out of order");
        }
        for (name, _, size, data) in &seen {
            assert_eq!(data.len() as u64, *size, "read of {name}");
        }
        for s in &summary.segments {
            assert!(s.offset < input.len() as u64);
            assert_eq!(s.members > 0, s.format != Format::Cpio);
        }
    }

    // Reading nothing or part of each entry walks the same way (the data read all may differ
    // only where a truncated entry ends the walk).
    let (none, seen_none) = run(input, Reading::None, None);
    let (part, seen_part) = run(input, Reading::Some(usize::from(knobs) * 7), None);
    assert_eq!(all.is_ok(), none.is_ok(), "{all:?} vs {none:?}");
    assert_eq!(all.is_ok(), part.is_ok(), "{all:?} vs {part:?}");
    if all.is_ok() {
        assert_eq!(meta(&seen), meta(&seen_none));
        assert_eq!(meta(&seen), meta(&seen_part));
        for ((_, _, _, whole), (_, _, _, some)) in seen.iter().zip(&seen_part) {
            assert!(whole.starts_with(some));
        }
    }

    let Ok(summary) = all else {
        return;
    };
    if summary.entries > 0 {
        let k = u64::from(knobs) % summary.entries + 1;
        let (stopped, seen_stop) = run(input, Reading::All, Some(k));
        let stopped = stopped.expect("a walk that succeeded succeeds when stopped early");
        assert_eq!(seen_stop.len() as u64, k);
        assert!(stopped.stopped);
        assert_eq!(seen_stop[..], seen[..k as usize]);
    }

    // Plain cpio only: the same archive compressed must read the same.
    if summary.segments.iter().all(|s| s.format == Format::Cpio) {
        let split = usize::from(knobs) * input.len() / 256;
        let mut gz = Vec::new();
        for part in [&input[..split], &input[split..]] {
            if part.is_empty() {
                continue;
            }
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).expect("in memory");
            gz.extend(enc.finish().expect("in memory"));
        }
        // A plain walk succeeds only if it used up the input (archives and NUL padding), so
        // the compressed walk must succeed too.
        let (gz_result, gz_seen) = run(&gz, Reading::All, None);
        let s = gz_result.expect("gzip of a good plain archive reads");
        assert_eq!(s.entries, summary.entries);
        assert_eq!(gz_seen, seen);
        let zst = zstd::encode_all(input, 1).expect("in memory");
        let (z_result, z_seen) = run(&zst, Reading::All, None);
        let s = z_result.expect("zstd of a good plain archive reads");
        assert_eq!(s.entries, summary.entries);
        assert_eq!(z_seen, seen);
    }
});
