//! `imagetool export` and `import` round trips on sparse images made with truncate and dd:
//! the streams decompress with stock gunzip/zstd to the exact image (cmp), the digest is the one
//! sha256sum prints, and imported images are sparse (du).

mod support;

use std::path::Path;

use support::sparse::*;

const MIB: u64 = 1 << 20;

/// Exports `img` in each format, checks each stream with the stock tool, imports it back and
/// checks content, apparent size and allocation. Returns the gzip export's summary.
fn round_trip(d: &Path, img: &str) -> String {
    let sha = sha256sum(d, img);
    let size = apparent(d, img);
    let source_alloc = allocated(d, img);
    let mut gzip_summary = String::new();
    for (ext, decompress) in [("gz", "gunzip -c"), ("zst", "zstd -q -dc"), ("raw", "cat")] {
        let out = format!("{img}.{ext}");
        let digest = format!("{out}.sha256");
        // The format comes from the output's name.
        let run = it(d, &["export", img, "-o", &out, "--digest", &digest]);
        run.ok();
        assert!(
            run.stderr.is_empty(),
            "stderr is not a terminal, so no progress: {:?}",
            run.stderr
        );
        assert!(
            run.stdout.contains(&format!("sha256:        {sha}\n")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!("({size} bytes)")),
            "{}",
            run.stdout
        );
        sh(d, &format!("{decompress} '{out}' | cmp - '{img}'"));
        // A sha256sum line naming the image, so `sha256sum -c` works beside an imported copy.
        assert_eq!(
            std::fs::read_to_string(d.join(&digest)).unwrap(),
            format!("{sha}  {img}\n")
        );
        sh(d, &format!("sha256sum -c --status '{digest}'"));
        if ext == "gz" {
            gzip_summary = run.stdout.clone();
        }

        let back = format!("{out}.back");
        let run = it(d, &["import", &out, "-o", &back]);
        run.ok();
        assert!(
            run.stdout.contains(&format!("verified against {digest}")),
            "{}",
            run.stdout
        );
        sh(d, &format!("cmp '{back}' '{img}'"));
        assert_eq!(apparent(d, &back), size);
        // One block of slack for an extent-tree block when the data is scattered.
        assert!(
            allocated(d, &back) <= source_alloc + 4096,
            "{back}: {} bytes allocated, the source has {source_alloc}",
            allocated(d, &back)
        );
    }
    // What `dd` writes from the decompressed stream is the image too.
    sh(
        d,
        &format!(
            "gunzip -c '{img}.gz' | dd of='{img}.dd' bs=1M status=none && cmp '{img}.dd' '{img}'"
        ),
    );
    gzip_summary
}

fn summary_number(summary: &str, label: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in {summary}"));
    let inner = &line[line.find('(').expect("a parenthesis") + 1..];
    inner
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn data_at_the_start() {
    let t = tempdir();
    let d = t.path();
    sh(d, "head -c 1M /dev/urandom > img && truncate -s 48M img");
    let summary = round_trip(d, "img");
    assert_eq!(summary_number(&summary, "data:"), MIB, "{summary}");
    // 47 MiB of hole cost next to nothing: the incompressible MiB, plus zeros at deflate's best
    // ratio of about 1030:1 (47 KiB), plus a little.
    let out = summary_number(&summary, "output:");
    assert!(out < MIB + 64 * 1024, "output {out} bytes: {summary}");
    assert!(allocated(d, "img.gz.back") <= MIB + 4096);
}

#[test]
fn data_at_the_end_and_an_unaligned_size() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "truncate -s 40M img && dd if=/dev/urandom of=img bs=4K count=10 seek=$((40 * 256 - 10)) conv=notrunc status=none",
    );
    round_trip(d, "img");
    // Ends 3 bytes past a block edge, and the last bytes are data.
    sh(
        d,
        "truncate -s $((32 * 1048576 + 3)) odd && dd if=/dev/urandom of=odd bs=1 seek=$((32 * 1048576 - 30)) count=33 conv=notrunc status=none",
    );
    round_trip(d, "odd");
    // Ends in a partial block of zeros after data: the hole at the end must still be there.
    sh(
        d,
        "truncate -s $((8 * 1048576 + 100)) tail && dd if=/dev/urandom of=tail bs=4K count=1 seek=100 conv=notrunc status=none",
    );
    round_trip(d, "tail");
    assert!(allocated(d, "tail.gz.back") <= 8192);
}

#[test]
fn all_hole() {
    let t = tempdir();
    let d = t.path();
    sh(d, "truncate -s 64M img");
    let summary = round_trip(d, "img");
    assert!(
        summary.contains("(0 bytes in 0 extents"),
        "a hole must not be read: {summary}"
    );
    assert!(summary_number(&summary, "output:") < 80 * 1024, "{summary}");
    for ext in ["gz", "zst", "raw"] {
        assert_eq!(allocated(d, &format!("img.{ext}.back")), 0);
    }
}

#[test]
fn all_data() {
    let t = tempdir();
    let d = t.path();
    // Random, then text, so the size is not a block multiple and part of it compresses.
    sh(d, "{ head -c 3M /dev/urandom; seq 1 300000; } > img");
    let size = apparent(d, "img");
    assert_ne!(size % 4096, 0);
    round_trip(d, "img");
    assert!(allocated(d, "img.zst.back") >= size);
}

#[test]
fn extents_not_aligned_to_4k() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "truncate -s 20M img
         dd if=/dev/urandom of=img bs=1 seek=5000 count=3000 conv=notrunc status=none
         dd if=/dev/urandom of=img bs=64K iflag=count_bytes oflag=seek_bytes seek=$((9 * 1048576 + 123)) count=70001 conv=notrunc status=none
         dd if=/dev/urandom of=img bs=1 seek=$((20 * 1048576 - 4097)) count=2 conv=notrunc status=none",
    );
    round_trip(d, "img");
}

#[test]
fn empty_image() {
    let t = tempdir();
    let d = t.path();
    sh(d, ": > img");
    let summary = round_trip(d, "img");
    assert!(summary.contains("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(apparent(d, "img.raw"), 0);
}

#[test]
fn written_zeros_become_holes() {
    let t = tempdir();
    let d = t.path();
    // 8 MiB of allocated zeros between random data; long enough to be exported as zero members.
    sh(
        d,
        "head -c 1M /dev/urandom > img
         dd if=/dev/zero of=img bs=1M count=8 seek=1 conv=notrunc status=none
         dd if=/dev/urandom of=img bs=1M count=1 seek=9 conv=notrunc status=none
         sync img",
    );
    let source = allocated(d, "img");
    assert!(
        source >= 10 * MIB,
        "fixture: the zeros must be allocated, du says {source}"
    );
    let summary = round_trip(d, "img");
    assert!(summary.contains("8.0 MiB of it zero blocks"), "{summary}");
    for ext in ["gz", "zst", "raw"] {
        let back = allocated(d, &format!("img.{ext}.back"));
        assert!(
            back <= 2 * MIB + 4096,
            "img.{ext}.back: {back} bytes allocated, the zeros were written"
        );
    }
}

#[test]
fn scattered_extents_over_a_larger_image() {
    let t = tempdir();
    let d = t.path();
    // 24 extents of 64 KiB, half random, half text, at uneven offsets in 288 MiB.
    sh(
        d,
        "truncate -s 288M img
         seq 1 100000 > text
         for i in $(seq 0 23); do
           off=$(( i * 12 * 1048576 + (i * 2654435761) % (10 * 1048576) ))
           if [ $((i % 2)) = 0 ]; then src=/dev/urandom; else src=text; fi
           dd if=$src of=img bs=64K count=1 iflag=fullblock oflag=seek_bytes seek=$off conv=notrunc status=none
         done
         rm text",
    );
    let summary = round_trip(d, "img");
    assert!(
        summary_number(&summary, "data:") <= 24 * 80 * 1024,
        "{summary}"
    );
}

#[test]
fn unknown_output_names_get_gzip_and_format_overrides_the_name() {
    let t = tempdir();
    let d = t.path();
    sh(d, "head -c 100K /dev/urandom > img && truncate -s 5M img");
    it(d, &["export", "img", "-o", "img.bin"]).ok();
    sh(d, "gunzip -c img.bin | cmp - img");
    it(
        d,
        &[
            "export", "img", "-o", "img.data", "--format", "zstd", "--level", "19",
        ],
    )
    .ok();
    sh(d, "zstd -q -dc img.data | cmp - img");
    it(d, &["export", "img", "-o", "img.fast.gz", "--level", "1"]).ok();
    sh(d, "gunzip -c img.fast.gz | cmp - img");
    it(d, &["export", "img", "-o", "img.store.gz", "--level", "0"]).ok();
    sh(d, "gunzip -c img.store.gz | cmp - img");
    it(
        d,
        &["export", "img", "-o", "img.negative.zst", "--level", "-5"],
    )
    .ok();
    sh(d, "zstd -q -dc img.negative.zst | cmp - img");
}
