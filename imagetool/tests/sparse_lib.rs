//! The library API that vmctl and others call: `imagetool::sparse::{export, import, DataExtents}`,
//! checked against fixtures from truncate/dd and results from gunzip, cmp and sha256sum.

mod support;

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use imagetool::atomic::Overwrite;
use imagetool::sparse::{self, DataExtents, ExportOptions, Format, ImportOptions, SparseError};
use support::sparse::*;

/// Pipes bytes into a shell command run in `d` and asserts it succeeds.
fn pipe_into(d: &Path, script: &str, bytes: &[u8]) {
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(d)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed the command");
    assert!(child.wait().expect("wait").success(), "{script} failed");
}

const WRITES: [(u64, u64); 4] = [
    (0, 4096),
    (5 << 20, 70_000),
    ((9 << 20) + 123, 1),
    ((32 << 20) - 10, 10),
];

/// 32 MiB with the [`WRITES`] ranges filled with random bytes.
fn fixture(d: &Path) {
    let mut script = String::from("truncate -s 32M img\n");
    for (off, len) in WRITES {
        script += &format!(
            "head -c {len} /dev/urandom | dd of=img bs=64K iflag=fullblock oflag=seek_bytes seek={off} conv=notrunc status=none\n"
        );
    }
    sh(d, &script);
}

#[test]
fn data_extents_cover_what_was_written_and_no_more_than_is_allocated() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    let file = File::open(d.join("img")).unwrap();
    let extents: Vec<_> = DataExtents::new(&file, 32 << 20)
        .collect::<io::Result<_>>()
        .unwrap();
    for (off, len) in WRITES {
        assert!(
            extents.iter().any(|e| e.start <= off && off + len <= e.end),
            "{off}+{len} is in no extent: {extents:?}"
        );
    }
    for pair in extents.windows(2) {
        assert!(
            pair[0].end < pair[1].start,
            "extents must be ordered and apart: {extents:?}"
        );
    }
    let total: u64 = extents.iter().map(|e| e.end - e.start).sum();
    assert!(
        total <= allocated(d, "img"),
        "{total} bytes of extents, du says {}",
        allocated(d, "img")
    );
    sh(d, "truncate -s 10M hole");
    let hole = File::open(d.join("hole")).unwrap();
    assert_eq!(DataExtents::new(&hole, 10 << 20).count(), 0);
}

#[test]
fn export_into_memory() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    for format in [Format::Gzip, Format::Zstd, Format::Raw] {
        let mut out = Vec::new();
        let opts = ExportOptions {
            format,
            level: (format != Format::Raw).then_some(1),
            ..Default::default()
        };
        let report = sparse::export(&d.join("img"), &mut out, &opts).unwrap();
        let check = match format {
            Format::Gzip => "gunzip -c | cmp - img",
            Format::Zstd => "zstd -q -dc | cmp - img",
            Format::Raw => "cmp - img",
        };
        pipe_into(d, check, &out);
        assert_eq!(report.format, format);
        assert_eq!(report.apparent_size, 32 << 20);
        assert_eq!(report.output_bytes, out.len() as u64);
        assert_eq!(report.sha256, Some(sha256sum(d, "img")));
        assert!(report.data_bytes >= WRITES.iter().map(|w| w.1).sum::<u64>());
        assert!(report.data_bytes <= allocated(d, "img"));
        assert!(report.extents >= 3);
    }
}

#[test]
fn import_from_a_reader() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    let mut stream = Vec::new();
    let report = sparse::export(&d.join("img"), &mut stream, &ExportOptions::default()).unwrap();
    let sha = report.sha256.expect("a digest by default");
    let opts = ImportOptions {
        expected_sha256: Some(sha.to_uppercase()),
        ..Default::default()
    };
    let back = sparse::import(&mut &stream[..], &d.join("back"), &opts).unwrap();
    sh(d, "cmp back img");
    assert_eq!(back.format, Format::Gzip);
    assert_eq!(back.sha256, sha);
    assert!(back.verified && back.sealed);
    assert_eq!((back.content_bytes, back.image_size), (32 << 20, 32 << 20));
    assert_eq!(back.input_bytes, stream.len() as u64);
    assert_eq!(back.allocated_bytes, allocated(d, "back"));
    // Data rounded out to 4 KiB blocks: (0,4096) 1, (5M,70000) 18, (9M+123,1) 1, (32M-10,10) 1.
    assert!(back.allocated_bytes <= 21 * 4096 + 4096, "{back:?}");
}

#[test]
fn import_errors_name_what_went_wrong_and_leave_nothing() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    let mut stream = Vec::new();
    sparse::export(&d.join("img"), &mut stream, &ExportOptions::default()).unwrap();
    let dest = d.join("back");
    let before = entries(d);
    let import = |bytes: &[u8], opts: &ImportOptions| sparse::import(&mut &bytes[..], &dest, opts);

    let cut = import(&stream[..stream.len() - 1], &ImportOptions::default());
    assert!(
        matches!(
            cut,
            Err(SparseError::Truncated {
                format: Format::Gzip,
                ..
            })
        ),
        "{cut:?}"
    );
    let wrong = ImportOptions {
        expected_sha256: Some("0".repeat(64)),
        ..Default::default()
    };
    assert!(matches!(
        import(&stream, &wrong),
        Err(SparseError::DigestMismatch { .. })
    ));
    let small = ImportOptions {
        size: Some(1 << 20),
        ..Default::default()
    };
    let err = import(&stream, &small);
    assert!(
        matches!(err, Err(SparseError::TooLarge { limit: 1048576, .. })),
        "{err:?}"
    );
    nothing_left(d, &before);

    std::fs::write(&dest, b"keep").unwrap();
    assert!(matches!(
        import(&stream, &ImportOptions::default()),
        Err(SparseError::Exists { .. })
    ));
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep");
    let force = ImportOptions {
        overwrite: Overwrite::Allow,
        ..Default::default()
    };
    import(&stream, &force).unwrap();
    sh(d, "cmp back img");
}

#[test]
fn export_without_a_digest_is_an_unsealed_standard_stream() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    for format in [Format::Gzip, Format::Zstd] {
        let opts = ExportOptions {
            format,
            digest: false,
            ..Default::default()
        };
        let mut out = Vec::new();
        let report = sparse::export(&d.join("img"), &mut out, &opts).unwrap();
        assert_eq!(report.sha256, None);
        let check = if format == Format::Gzip {
            "gunzip -c"
        } else {
            "zstd -q -dc"
        };
        pipe_into(d, &format!("{check} | cmp - img"), &out);
        let back =
            sparse::import(&mut &out[..], &d.join("back"), &ImportOptions::default()).unwrap();
        assert!(!back.sealed, "no digest, so no end record");
        assert_eq!(back.sha256, sha256sum(d, "img"));
        std::fs::remove_file(d.join("back")).unwrap();
    }
}

/// A writer whose reader has gone away after `room` bytes.
struct Closing {
    room: usize,
    kind: io::ErrorKind,
}

impl Write for Closing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::from(self.kind));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn export_errors_name_what_went_wrong() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    sh(d, "mkdir dir");
    let opts = ExportOptions::default();
    let mut pipe = Closing {
        room: 1000,
        kind: io::ErrorKind::BrokenPipe,
    };
    let err = sparse::export(&d.join("img"), &mut pipe, &opts);
    assert!(matches!(err, Err(SparseError::OutputClosed)), "{err:?}");
    let mut full = Closing {
        room: 1000,
        kind: io::ErrorKind::StorageFull,
    };
    let err = sparse::export(&d.join("img"), &mut full, &opts);
    assert!(matches!(err, Err(SparseError::Write(_))), "{err:?}");
    let err = sparse::export(&d.join("dir"), &mut Vec::new(), &opts);
    assert!(
        matches!(err, Err(SparseError::NotAnImage { .. })),
        "{err:?}"
    );
    let err = sparse::export(&d.join("missing"), &mut Vec::new(), &opts);
    assert!(matches!(err, Err(SparseError::Open { .. })), "{err:?}");
    let bad = ExportOptions {
        level: Some(42),
        ..Default::default()
    };
    let mut out = Vec::new();
    assert!(matches!(
        sparse::export(&d.join("img"), &mut out, &bad),
        Err(SparseError::InvalidLevel { .. })
    ));
    assert!(
        out.is_empty(),
        "nothing may be written before the options are checked"
    );
}

/// Detaches a loop device when the test ends, passed or not.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn exports_block_devices() {
    let t = tempdir();
    let d = t.path();
    fixture(d);
    let attach = sh_run(d, "losetup --find --show --read-only img");
    if attach.status != 0 {
        println!(
            "SKIP exports_block_devices: cannot attach a loop device here: {}",
            attach.stderr.trim()
        );
        return;
    }
    let dev = Loop(attach.stdout.trim().to_string());
    let mut out = Vec::new();
    let report = sparse::export(Path::new(&dev.0), &mut out, &ExportOptions::default()).unwrap();
    assert_eq!(report.apparent_size, 32 << 20);
    assert_eq!(report.sha256, Some(sha256sum(d, "img")));
    pipe_into(d, "gunzip -c | cmp - img", &out);
}
