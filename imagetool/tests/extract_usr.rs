//! `imagetool extract-usr` against archives made by GNU cpio and the stock compressors.

mod support;

use std::path::Path;

use support::*;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn extract(dir: &Path, archive: &str, out: &str, extra: &[&str]) -> Run {
    let (a, o) = (p(dir, archive), p(dir, out));
    let mut args = vec!["extract-usr", a.as_str(), "-o", o.as_str()];
    args.extend_from_slice(extra);
    imagetool(&args)
}

fn check_output(dir: &Path, run: &Run, out: &str, expected: &Path) {
    run.ok();
    let out_path = dir.join(out);
    cmp(&out_path, expected);
    sh(dir, &format!("unsquashfs -s {out} >/dev/null"));
    let digest = sha256sum(&out_path);
    assert!(
        run.stdout.contains(&format!("sha256 {digest}")),
        "digest not printed: {}",
        run.stdout
    );
}

#[test]
fn flatcar_layout_with_each_squashfs_compressor() {
    let t = tempdir();
    let d = t.path();
    for comp in ["gzip", "xz", "zstd", "lzo", "lz4"] {
        let sq = squashfs(d, &format!("{comp}.squashfs"), comp);
        let root = pxe_root(d, &format!("root-{comp}"), &[(&sq, "usr.squashfs")]);
        let cpio = cpio_dotslash(d, &root, &format!("{comp}.cpio"));
        sh(d, &format!("gzip -9 -k {}", cpio.display()));
        let out = format!("out-{comp}.squashfs");
        let run = extract(d, &format!("{comp}.cpio.gz"), &out, &[]);
        check_output(d, &run, &out, &sq);
        assert!(
            run.stdout
                .starts_with("took ./usr.squashfs (archive segment 1, gzip)"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!("{comp} compression")),
            "{}",
            run.stdout
        );
        // unsquashfs reads the same superblock facts we print.
        let facts = sh(d, &format!("unsquashfs -s {out}"));
        assert!(facts.contains(&format!("Compression {comp}")), "{facts}");
    }
}

#[test]
fn outer_compression_plain_gzip_xz_zstd_and_stdin() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "usr.squashfs.orig", "xz");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    sh(
        d,
        "gzip -k pxe.cpio && xz -k -T1 pxe.cpio && zstd -q -k pxe.cpio",
    );
    for (archive, kind) in [
        ("pxe.cpio", "took usr.squashfs\n"),
        ("pxe.cpio.gz", "gzip"),
        ("pxe.cpio.xz", "xz"),
        ("pxe.cpio.zst", "zstd"),
    ] {
        let out = format!("{archive}.out");
        let run = extract(d, archive, &out, &[]);
        check_output(d, &run, &out, &sq);
        assert!(run.stdout.contains(kind), "{archive}: {}", run.stdout);
    }
    let o = p(d, "stdin.out");
    let run = imagetool_stdin(&["extract-usr", "-", "-o", &o], &d.join("pxe.cpio.gz"));
    check_output(d, &run, "stdin.out", &sq);
}

#[test]
fn concatenated_archives_like_initrd_lists() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "usr.squashfs.orig", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    // An OEM archive as Flatcar appends it: usr/share/oem/config.ign.
    sh(
        d,
        "mkdir -p oem/usr/share/oem && echo '{}' > oem/usr/share/oem/config.ign
         (cd oem && find . | cpio -o -H newc --quiet) > oem.cpio
         gzip -k pxe.cpio oem.cpio && zstd -q -k oem.cpio
         cat pxe.cpio.gz oem.cpio.gz > usr-then-oem.gz
         cat oem.cpio.gz pxe.cpio.gz > oem-then-usr.gz
         cat oem.cpio.zst pxe.cpio.gz > zstd-then-gzip
         # An uncompressed early archive (microcode style) before the compressed main one.
         cat oem.cpio pxe.cpio.gz > plain-then-gzip
         # NUL padding between archives, as bootloaders align them.
         { cat oem.cpio.gz; head -c 1000 /dev/zero; cat pxe.cpio.gz; } > padded",
    );
    for archive in [
        "usr-then-oem.gz",
        "oem-then-usr.gz",
        "zstd-then-gzip",
        "plain-then-gzip",
        "padded",
    ] {
        let out = format!("{archive}.out");
        let run = extract(d, archive, &out, &[]);
        check_output(d, &run, &out, &sq);
    }
    let run = extract(d, "zstd-then-gzip", "seg.out", &[]);
    assert!(run.stdout.contains("segment 2, gzip"), "{}", run.stdout);
}

#[test]
fn multi_member_gzip_split_inside_the_squashfs() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "usr.squashfs.orig", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    // Cut the archive in the middle of usr.squashfs's data and compress the halves separately:
    // one logical stream in two gzip members, as `pigz --independent` or appending tools make.
    sh(
        d,
        "split -b 300001 pxe.cpio part. && for f in part.*; do gzip -c $f; done > multi.gz && [ $(ls part.* | wc -l) -ge 2 ]",
    );
    let run = extract(d, "multi.gz", "multi.out", &[]);
    check_output(d, &run, "multi.out", &sq);
}

#[test]
fn names_without_dot_slash_and_fedora_coreos_rootfs() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "src.squashfs", "zstd");
    sh(
        d,
        "mkdir bare && cp src.squashfs bare/usr.squashfs && (cd bare && echo usr.squashfs | cpio -o -H newc --quiet) | gzip > bare.cpio.gz",
    );
    let run = extract(d, "bare.cpio.gz", "bare.out", &[]);
    check_output(d, &run, "bare.out", &sq);
    assert!(
        run.stdout.starts_with("took usr.squashfs"),
        "{}",
        run.stdout
    );

    // Fedora CoreOS live rootfs.img: plain newc, root.squashfs first, no ./ prefix.
    sh(
        d,
        "mkdir fcos && cp src.squashfs fcos/root.squashfs && (cd fcos && echo root.squashfs | cpio -o -H newc --quiet) > rootfs.img",
    );
    let run = extract(d, "rootfs.img", "root.out", &[]);
    check_output(d, &run, "root.out", &sq);
    assert!(
        run.stdout.starts_with("took root.squashfs"),
        "should say which entry it took: {}",
        run.stdout
    );
}

#[test]
fn member_option_picks_another_entry_and_verify_reads_every_file() {
    let t = tempdir();
    let d = t.path();
    let usr = squashfs(d, "usr.squashfs.orig", "gzip");
    sh(
        d,
        "mkdir other && head -c 100000 /dev/urandom > other/x && mksquashfs other other.squashfs -quiet -no-progress >/dev/null",
    );
    let other = d.join("other.squashfs");
    let root = pxe_root(
        d,
        "root",
        &[(&usr, "usr.squashfs"), (&other, "extra.squashfs")],
    );
    cpio_find(d, &root, "pxe.cpio");
    let run = extract(d, "pxe.cpio", "picked", &["--member", "./extra.squashfs"]);
    check_output(d, &run, "picked", &other);
    let run = extract(d, "pxe.cpio", "verified", &["--verify"]);
    check_output(d, &run, "verified", &usr);
    let files = sh(d, "find usrsrc -type f | wc -l").trim().to_string();
    assert!(
        run.stdout.contains(&format!("read {files} files")),
        "verify should read all {files} files: {}",
        run.stdout
    );
}

#[test]
fn replaces_an_existing_output_atomically() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "usr.squashfs.orig", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    std::fs::write(d.join("out"), b"old").expect("write");
    let run = extract(d, "pxe.cpio", "out", &[]);
    check_output(d, &run, "out", &sq);
}

/// Each bad input: one clear line, non-zero exit, no output and no temporary file left.
#[test]
fn bad_inputs_fail_cleanly() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "good.squashfs", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    let nosq = pxe_root(d, "nosq", &[]);
    sh(d, "echo hello > nosq/etc/hostname");
    cpio_find(d, &nosq, "nosq.cpio");
    sh(
        d,
        "gzip -k pxe.cpio
         head -c 5000 /dev/urandom > random.bin
         printf 'just some text\\n' > text.txt
         : > empty
         head -c 200000 pxe.cpio.gz > truncated.gz
         head -c 300000 pxe.cpio > truncated.cpio
         bzip2 -k -c pxe.cpio > pxe.cpio.bz2
         (cd root && find . | cpio -o -H odc --quiet) > odc.cpio
         # Corrupt superblocks: wrong version, inconsistent block_log, lzma (no kernel reads it).
         mkdir bad && for v in version blocklog lzma; do cp good.squashfs bad/usr.squashfs; \
           case $v in version) printf '\\x03' | dd of=bad/usr.squashfs bs=1 seek=28 conv=notrunc status=none;; \
                      blocklog) printf '\\x0c' | dd of=bad/usr.squashfs bs=1 seek=22 conv=notrunc status=none;; \
                      lzma) printf '\\x02' | dd of=bad/usr.squashfs bs=1 seek=20 conv=notrunc status=none;; esac; \
           (cd bad && echo usr.squashfs | cpio -o -H newc --quiet) > bad-$v.cpio; done
         # A squashfs cut short inside an otherwise complete archive.
         mkdir short && head -c 100000 good.squashfs > short/usr.squashfs
         (cd short && echo usr.squashfs | cpio -o -H newc --quiet) > short.cpio
         mkdir out",
    );
    let cases: &[(&str, &[&str])] = &[
        ("random.bin", &["not a cpio archive"]),
        ("text.txt", &["not a cpio archive"]),
        ("empty", &["empty"]),
        ("truncated.gz", &["truncated"]),
        ("truncated.cpio", &["truncated"]),
        (
            "pxe.cpio.bz2",
            &["bzip2", "not supported", "gzip, xz or zstd"],
        ),
        ("odc.cpio", &["newc"]),
        (
            "nosq.cpio",
            &[
                "usr.squashfs or root.squashfs not found",
                "etc/hostname",
                "--member",
            ],
        ),
        ("bad-version.cpio", &["version 3.0", "not supported"]),
        ("bad-blocklog.cpio", &["corrupt", "block_log"]),
        ("bad-lzma.cpio", &["lzma", "no Linux kernel reads"]),
        ("short.cpio", &["truncated", "superblock says"]),
        ("missing-file", &["cannot open", "missing-file"]),
    ];
    for (input, fragments) in cases {
        let out = p(&d.join("out"), "usr.squashfs");
        let run = imagetool(&["extract-usr", &p(d, input), "-o", &out]);
        run.fails_with(fragments);
        assert_only(&d.join("out"), &[]);
    }
    let run = imagetool(&[
        "extract-usr",
        &p(d, "pxe.cpio"),
        "-o",
        &p(d, "no/such/dir/usr.squashfs"),
    ]);
    run.fails_with(&["no/such/dir"]);
}

#[test]
fn verify_catches_a_corrupt_data_block() {
    let t = tempdir();
    let d = t.path();
    squashfs(d, "good.squashfs", "gzip");
    // Garble the compressed inode table (its offset is the u64 at byte 64 of the superblock);
    // the superblock stays intact, so only reading the files back can notice.
    sh(
        d,
        "mkdir bad && cp good.squashfs bad/usr.squashfs \
         && at=$(od -An -t u8 -j 64 -N 8 good.squashfs | tr -d ' ') \
         && head -c 64 /dev/urandom | dd of=bad/usr.squashfs bs=1 seek=$((at + 2)) conv=notrunc status=none \
         && ! unsquashfs -l bad/usr.squashfs >/dev/null 2>&1",
    );
    sh(
        d,
        "(cd bad && echo usr.squashfs | cpio -o -H newc --quiet) > bad.cpio && mkdir out",
    );
    let o = p(&d.join("out"), "usr.squashfs");
    // Without --verify the superblock checks pass; with it the damage is found.
    imagetool(&["extract-usr", &p(d, "bad.cpio"), "-o", &o]).ok();
    std::fs::remove_file(&o).expect("rm");
    imagetool(&["extract-usr", &p(d, "bad.cpio"), "-o", &o, "--verify"])
        .fails_with(&["verification failed"]);
    assert_only(&d.join("out"), &[]);
}

#[test]
fn interrupted_extraction_leaves_nothing_behind() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "usr.squashfs.orig", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_find(d, &root, "pxe.cpio");
    std::fs::create_dir(d.join("out")).expect("mkdir");
    let data = std::fs::read(d.join("pxe.cpio")).expect("read");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagetool"))
        .args(["extract-usr", "-", "-o", &p(&d.join("out"), "usr.squashfs")])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // Half the archive, then wait until the temporary output exists: it is mid-copy.
    stdin.write_all(&data[..data.len() / 2]).expect("feed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(d.join("out"))
        .expect("ls")
        .next()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary output appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sh(d, &format!("kill -INT {}", child.id()));
    let status = child.wait().expect("wait");
    drop(stdin);
    assert!(!status.success());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(2),
        "should end by SIGINT, as shells expect: {status:?}"
    );
    assert_only(&d.join("out"), &[]);
}
