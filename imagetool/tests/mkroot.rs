//! `imagetool mkroot`, checked with e2fsck, dumpe2fs, debugfs and du.

mod support;

use std::path::Path;

use support::*;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn creates_a_sparse_clean_ext4_root() {
    let t = tempdir();
    let d = t.path();
    let img = p(d, "root.img");
    let uuid = "0b5e1f1c-7a52-4d27-9b0c-2f6e3c1d4a99";
    let run = imagetool(&["mkroot", "-o", &img, "--size", "8G", "--uuid", uuid]);
    run.ok();
    sh(d, "e2fsck -fn root.img >/dev/null");
    let facts = sh(d, "dumpe2fs -h root.img 2>/dev/null");
    assert!(facts.contains("Filesystem volume name:   ROOT"), "{facts}");
    assert!(
        facts.contains(&format!("Filesystem UUID:          {uuid}")),
        "{facts}"
    );
    assert!(facts.contains("extent"), "not ext4: {facts}");
    let apparent = std::fs::metadata(d.join("root.img")).expect("stat").len();
    assert_eq!(apparent, 8 << 30);
    let allocated = du_bytes(&d.join("root.img"));
    // mkfs.ext4 writes superblocks, bitmaps and the root directory: a few MiB of 8 GiB.
    assert!(
        allocated < apparent / 200,
        "{allocated} bytes allocated of {apparent}: not sparse"
    );
    assert!(
        run.stdout.contains(uuid) && run.stdout.contains("\"ROOT\""),
        "{}",
        run.stdout
    );
}

#[test]
fn seeds_content_from_a_directory() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "mkdir -p seed/etc/ssh seed/home/core && echo node-1 > seed/etc/hostname && head -c 300000 /dev/urandom > seed/home/core/blob && ln -s /etc/hostname seed/home/core/link",
    );
    let run = imagetool(&[
        "mkroot",
        "-o",
        &p(d, "r.img"),
        "--size",
        "64M",
        "--label",
        "OEMROOT",
        "--from",
        &p(d, "seed"),
    ]);
    run.ok();
    sh(d, "e2fsck -fn r.img >/dev/null");
    assert_eq!(
        sh(d, "debugfs -R 'cat /etc/hostname' r.img 2>/dev/null"),
        "node-1\n"
    );
    sh(
        d,
        "debugfs -R 'dump /home/core/blob blob.out' r.img 2>/dev/null && cmp blob.out seed/home/core/blob",
    );
    let link = sh(d, "debugfs -R 'stat /home/core/link' r.img 2>/dev/null");
    assert!(link.contains("Fast link dest: \"/etc/hostname\""), "{link}");
    assert!(sh(d, "dumpe2fs -h r.img 2>/dev/null").contains("Filesystem volume name:   OEMROOT"));
}

#[test]
fn refuses_to_overwrite_without_force() {
    let t = tempdir();
    let d = t.path();
    std::fs::write(d.join("disk.img"), b"precious").expect("write");
    imagetool(&["mkroot", "-o", &p(d, "disk.img"), "--size", "64M"])
        .fails_with(&["already exists", "--force"]);
    assert_eq!(
        std::fs::read(d.join("disk.img")).expect("read"),
        b"precious"
    );
    imagetool(&[
        "mkroot",
        "-o",
        &p(d, "disk.img"),
        "--size",
        "64M",
        "--force",
    ])
    .ok();
    sh(d, "e2fsck -fn disk.img >/dev/null");
    assert_only(d, &["disk.img"]);
}

#[test]
fn bad_requests_fail_cleanly() {
    let t = tempdir();
    let d = t.path();
    let img = p(d, "r.img");
    imagetool(&["mkroot", "-o", &img, "--size", "1M"]).fails_with(&["too small", "32M"]);
    imagetool(&[
        "mkroot",
        "-o",
        &img,
        "--size",
        "64M",
        "--label",
        "a-label-of-17-chr",
    ])
    .fails_with(&["16 bytes"]);
    imagetool(&[
        "mkroot",
        "-o",
        &img,
        "--size",
        "64M",
        "--from",
        &p(d, "nope"),
    ])
    .fails_with(&["not a directory"]);
    imagetool(&["mkroot", "-o", &p(d, "no/dir/r.img"), "--size", "64M"])
        .fails_with(&["cannot create", "no/dir/r.img"]);
    // e2fsprogs missing, or too old for --from: say how to install it.
    let missing = imagetool_env(
        &["mkroot", "-o", &img, "--size", "64M"],
        &[("IMAGETOOL_MKFS_EXT4", "/nonexistent/mkfs.ext4")],
    );
    missing.fails_with(&["mkfs.ext4 not found", "apt install e2fsprogs"]);
    sh(
        d,
        "printf '#!/bin/sh\\necho \"mke2fs 1.42.9 (28-Dec-2013)\" >&2\\n' > old-mkfs && chmod +x old-mkfs",
    );
    std::fs::create_dir(d.join("seed")).expect("mkdir");
    let old = imagetool_env(
        &[
            "mkroot",
            "-o",
            &img,
            "--size",
            "64M",
            "--from",
            &p(d, "seed"),
        ],
        &[("IMAGETOOL_MKFS_EXT4", &p(d, "old-mkfs"))],
    );
    old.fails_with(&["1.42.9", "too old", "1.43"]);
    assert_only(d, &["old-mkfs", "seed"]);
}
