//! `imagetool export` / `import` behaviour beyond round trips: pipes, streams from the stock
//! tools, truncation, digests, refusals, `--size`, argument errors, progress on a terminal.

mod support;

use std::path::Path;

use support::sparse::*;

/// 1 MiB of random data, a hole, 64 KiB of text, a hole: 24 MiB in all.
fn small_image(d: &Path, name: &str) {
    sh(
        d,
        &format!(
            "head -c 1M /dev/urandom > {name}
             truncate -s 24M {name}
             seq 1 12000 | dd of={name} bs=64K count=1 iflag=fullblock seek=200 conv=notrunc status=none"
        ),
    );
}

#[test]
fn export_to_a_pipe_and_import_from_one() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    let sha = sha256sum(d, "img");
    // With the stream on stdout the summary goes to stderr, and stdout is the stream alone.
    sh(
        d,
        "imagetool export img -o - 2>summary > stream.gz && gunzip -c stream.gz | cmp - img",
    );
    let summary = std::fs::read_to_string(d.join("summary")).unwrap();
    assert!(
        summary.contains(&format!("sha256:        {sha}")),
        "{summary}"
    );
    let out = sh(
        d,
        "imagetool export img -o - 2>/dev/null | imagetool import - -o back",
    );
    assert!(
        out.contains("verified against the stream's end record"),
        "{out}"
    );
    sh(d, "cmp back img");
    assert!(allocated(d, "back") <= allocated(d, "img"));
    let out = sh(
        d,
        "imagetool export img -o - --format zstd 2>/dev/null | imagetool import - -o back.zst.img",
    );
    assert!(out.contains("(") && out.contains("zstd)"), "{out}");
    sh(d, "cmp back.zst.img img");
    // Raw through a pipe: the holes are found again by looking at the zeros.
    sh(
        d,
        "imagetool export img -o - --format raw 2>/dev/null | imagetool import - -o back.raw.img",
    );
    sh(d, "cmp back.raw.img img");
    assert!(allocated(d, "back.raw.img") <= allocated(d, "img"));
}

#[test]
fn imports_streams_made_by_the_stock_tools() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    let alloc = allocated(d, "img");
    // One member, then three members split at odd places, then zstd frames likewise.
    sh(
        d,
        "gzip -c img > one.gz
         head -c 1000001 img > p1
         dd if=img of=p2 bs=1M iflag=skip_bytes,count_bytes skip=1000001 count=7000000 status=none
         tail -c +8000002 img > p3
         cat p1 p2 p3 | cmp - img
         { gzip -1 -c p1; gzip -9 -c p2; gzip -c p3; } > multi.gz
         zstd -q -c img > one.zst
         { zstd -q -1 -c p1; zstd -q -19 -c p2; zstd -q -c p3; } > multi.zst
         printf '\\x50\\x2a\\x4d\\x18\\x04\\x00\\x00\\x00abcd' | cat - one.zst > skippable.zst",
    );
    for input in [
        "one.gz",
        "multi.gz",
        "one.zst",
        "multi.zst",
        "skippable.zst",
    ] {
        let back = format!("{input}.img");
        let run = it(d, &["import", input, "-o", &back]);
        run.ok();
        assert!(run.stdout.contains("not verified"), "{}", run.stdout);
        sh(d, &format!("cmp '{back}' img"));
        assert!(allocated(d, &back) <= alloc + 4096, "{back} is not sparse");
    }
    // Raw on standard input.
    let run = it_stdin(d, &["import", "-", "-o", "raw.img"], "img");
    run.ok();
    assert!(run.stdout.contains("raw)"), "{}", run.stdout);
    sh(d, "cmp raw.img img");
    assert!(allocated(d, "raw.img") <= alloc + 4096);
}

/// Offset of the end record in an imagetool stream: its payload starts with a known mark, after
/// the gzip header (10 bytes), XLEN (2) and subfield header (4), or the skippable frame header (8).
fn end_record_offset(d: &Path, file: &str, header: u64) -> u64 {
    let out = sh(
        d,
        &format!("grep -obUa 'imagetool-sparse/1 size=' '{file}' | tail -n1 | cut -d: -f1"),
    );
    out.trim().parse::<u64>().expect("offset") - header
}

#[test]
fn truncated_streams_fail_and_leave_nothing() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(
        d,
        "imagetool export img -o img.gz && imagetool export img -o img.zst && gzip -c img > stock.gz && zstd -q -c img > stock.zst",
    );
    let gz_end = end_record_offset(d, "img.gz", 16);
    let zst_end = end_record_offset(d, "img.zst", 8);
    let mut cuts = vec![];
    for file in ["img.gz", "img.zst", "stock.gz", "stock.zst"] {
        let len = apparent(d, file);
        cuts.extend([(file, 20), (file, len / 2), (file, len - 1)]);
    }
    // Exactly between two members/frames: a valid shorter stream, caught only by the end record.
    cuts.push(("img.gz", gz_end));
    cuts.push(("img.zst", zst_end));
    for (file, keep) in cuts {
        let cut = format!("cut-{keep}-{file}");
        sh(d, &format!("head -c {keep} '{file}' > '{cut}'"));
        let before = entries(d);
        let run = it(d, &["import", &cut, "-o", "back.img"]);
        run.fails_with(&["cannot import", "truncated"]);
        nothing_left(d, &before);
        // The same through a pipe.
        let run = it_stdin(d, &["import", "-", "-o", "back.img"], &cut);
        run.fails_with(&["cannot import standard input", "truncated"]);
        nothing_left(d, &before);
    }
}

#[test]
fn digests_are_checked_and_mismatches_leave_nothing() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(d, "head -c 3000 /dev/urandom > other");
    let sha = sha256sum(d, "img");
    let other = sha256sum(d, "other");
    sh(
        d,
        "imagetool export img -o img.gz && gzip -c img > stock.gz && cp img img.raw",
    );

    let before = entries(d);
    // A digest file beside the input that belongs to something else.
    for input in ["img.gz", "stock.gz", "img.raw"] {
        std::fs::write(d.join(format!("{input}.sha256")), format!("{other}  img\n")).unwrap();
        let run = it(d, &["import", input, "-o", "back.img"]);
        run.fails_with(&["sha256 mismatch", &other, &sha, &format!("{input}.sha256")]);
        let run = it(d, &["import", input, "-o", "back.img", "--digest", &other]);
        run.fails_with(&["sha256 mismatch", &other]);
        std::fs::remove_file(d.join(format!("{input}.sha256"))).unwrap();
        nothing_left(d, &before);
    }
    // The right digest, given as hex digits or as a file.
    let run = it(
        d,
        &[
            "import",
            "stock.gz",
            "-o",
            "a.img",
            "--digest",
            &sha.to_uppercase(),
        ],
    );
    run.ok();
    assert!(
        run.stdout.contains("verified against --digest\n")
            || run.stdout.contains("verified against --digest)"),
        "{}",
        run.stdout
    );
    std::fs::write(d.join("sums"), format!("{sha}  img\n")).unwrap();
    let run = it(d, &["import", "img.gz", "-o", "b.img", "--digest", "sums"]);
    run.ok();
    assert!(
        run.stdout
            .contains("verified against sums and the stream's end record"),
        "{}",
        run.stdout
    );
    sh(d, "cmp a.img img && cmp b.img img");
    // Not a digest at all.
    std::fs::write(d.join("junk"), "hello\n").unwrap();
    let before = entries(d);
    it(d, &["import", "img.gz", "-o", "c.img", "--digest", "junk"])
        .fails_with(&["junk holds no SHA-256 digest"]);
    it(
        d,
        &["import", "img.gz", "-o", "c.img", "--digest", "missing"],
    )
    .fails_with(&["missing"]);
    nothing_left(d, &before);
}

#[test]
fn corrupt_and_joined_streams_fail() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(
        d,
        "truncate -s 1M hole && imagetool export img -o img.gz && imagetool export hole -o hole.gz && gzip -c img > stock.gz",
    );
    // Flip a byte in the middle of the compressed data: gzip's CRC or deflate itself objects.
    sh(
        d,
        "cp stock.gz bad.gz && printf '\\xff' | dd of=bad.gz bs=1 seek=500000 conv=notrunc status=none",
    );
    let before = entries(d);
    it(d, &["import", "bad.gz", "-o", "back.img"]).fails_with(&["gzip stream is corrupt"]);
    nothing_left(d, &before);
    // Two exports joined: each part is valid, the end record describes only the last.
    sh(d, "cat img.gz hole.gz > joined.gz");
    let before = entries(d);
    it(d, &["import", "joined.gz", "-o", "back.img"])
        .fails_with(&["end record says 1048576 bytes", "joined"]);
    nothing_left(d, &before);
    // Trailing junk after the last member.
    sh(
        d,
        "{ cat img.gz; echo 'some trailing junk that is not gzip'; } > junk.gz",
    );
    let before = entries(d);
    it(d, &["import", "junk.gz", "-o", "back.img"]).fails_with(&["gzip stream"]);
    nothing_left(d, &before);
}

#[test]
fn no_digest_skips_the_hash_and_the_end_record() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    let run = it(d, &["export", "img", "-o", "img.gz", "--no-digest"]);
    run.ok();
    assert!(
        run.stdout
            .contains("sha256:        not computed (--no-digest)"),
        "{}",
        run.stdout
    );
    sh(d, "gunzip -c img.gz | cmp - img");
    let run = it(d, &["import", "img.gz", "-o", "back.img"]);
    run.ok();
    assert!(run.stdout.contains("not verified"), "{}", run.stdout);
    sh(d, "cmp back.img img");
    let before = entries(d);
    it(
        d,
        &[
            "export",
            "img",
            "-o",
            "x.gz",
            "--no-digest",
            "--digest",
            "x.sha256",
        ],
    )
    .fails_with(&["--no-digest", "--digest"]);
    nothing_left(d, &before);
}

#[test]
fn existing_outputs_need_force() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(
        d,
        "imagetool export img -o img.gz && echo keep > back.img && echo keep > out.gz && echo keep > d.sha256",
    );
    let before = entries(d);
    it(d, &["import", "img.gz", "-o", "back.img"])
        .fails_with(&["back.img already exists", "--force"]);
    it(d, &["export", "img", "-o", "out.gz"]).fails_with(&["out.gz already exists", "--force"]);
    it(
        d,
        &["export", "img", "-o", "new.gz", "--digest", "d.sha256"],
    )
    .fails_with(&["d.sha256 already exists"]);
    nothing_left(d, &before);
    sh(
        d,
        "grep -qx keep back.img && grep -qx keep out.gz && grep -qx keep d.sha256",
    );
    it(d, &["import", "img.gz", "-o", "back.img", "--force"]).ok();
    it(
        d,
        &[
            "export", "img", "-o", "out.gz", "--force", "--digest", "d.sha256",
        ],
    )
    .ok();
    sh(
        d,
        "cmp back.img img && gunzip -c out.gz | cmp - img && sha256sum -c --status d.sha256",
    );
}

#[test]
fn size_sets_the_apparent_size() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(d, "imagetool export img -o img.zst");
    let run = it(d, &["import", "img.zst", "-o", "big.img", "--size", "64M"]);
    run.ok();
    assert_eq!(apparent(d, "big.img"), 64 << 20);
    assert!(allocated(d, "big.img") <= allocated(d, "img") + 4096);
    sh(
        d,
        "cat img | cmp -n $(stat -c %s img) - big.img && { cat img; head -c 40M /dev/zero; } | cmp - big.img",
    );
    it(
        d,
        &["import", "img.zst", "-o", "same.img", "--size", "25165824"],
    )
    .ok();
    sh(d, "cmp same.img img");
    let before = entries(d);
    it(d, &["import", "img.zst", "-o", "small.img", "--size", "1M"])
        .fails_with(&["larger than the requested image size of 1048576 bytes"]);
    it(
        d,
        &["import", "img.zst", "-o", "small.img", "--size", "lots"],
    )
    .fails_with(&["invalid size"]);
    nothing_left(d, &before);
}

#[test]
fn bad_arguments_fail_before_any_output() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    sh(d, "mkdir dir && printf '\\xfd7zXZ\\x00 and more' > fake.xz");
    let before = entries(d);
    it(d, &["export", "img", "-o", "a.gz", "--level", "10"]).fails_with(&["level 10", "0 to 9"]);
    it(d, &["export", "img", "-o", "a.zst", "--level", "23"]).fails_with(&["level 23", "zstd"]);
    it(d, &["export", "img", "-o", "a.raw", "--level", "1"])
        .fails_with(&["raw", "no compression level"]);
    it(d, &["export", "missing.img", "-o", "a.gz"]).fails_with(&["cannot open missing.img"]);
    it(d, &["export", "dir", "-o", "a.gz"]).fails_with(&["dir is not a disk image"]);
    it(d, &["export", "/dev/null", "-o", "a.gz"]).fails_with(&["/dev/null is not a disk image"]);
    it(d, &["export", "img", "-o", "nodir/a.gz"]).fails_with(&["cannot create nodir/a.gz"]);
    it(d, &["import", "missing.gz", "-o", "a.img"]).fails_with(&["cannot open missing.gz"]);
    it(d, &["import", "dir", "-o", "a.img"]).fails_with(&["dir is a directory"]);
    it(d, &["import", "img", "-o", "-"]).fails_with(&["-o IMAGE"]);
    it(d, &["import", "fake.xz", "-o", "a.img"]).fails_with(&["xz-compressed"]);
    nothing_left(d, &before);
    // Told it is raw, an xz file is just bytes.
    it(d, &["import", "fake.xz", "-o", "a.img", "--format", "raw"]).ok();
    sh(d, "cmp a.img fake.xz");
}

/// Runs a command line on a pseudo-terminal (util-linux `script`) and returns what it printed.
fn on_terminal(d: &Path, command: &str) -> String {
    sh(d, &format!("script -qec '{command}' /dev/null"))
}

#[test]
fn progress_on_a_terminal_and_a_refusal_to_write_streams_to_one() {
    let t = tempdir();
    let d = t.path();
    small_image(d, "img");
    let out = on_terminal(d, "imagetool export img -o img.gz");
    // The bar's template: message, then bytes done out of the total.
    assert!(
        out.contains("export") && out.contains("/24.00 MiB"),
        "no progress bar drawn: {out:?}"
    );
    let out = on_terminal(d, "imagetool import img.gz -o back.img");
    assert!(out.contains("import"), "no progress bar drawn: {out:?}");
    sh(d, "cmp back.img img");
    let out = sh_run(d, "script -qec 'imagetool export img -o -' /dev/null").stdout;
    assert!(out.contains("standard output is a terminal"), "{out:?}");
    // Not on a terminal: nothing on stderr.
    let run = it(d, &["import", "img.gz", "-o", "quiet.img"]);
    run.ok();
    assert_eq!(run.stderr, "");
}
