//! `imagetool inspect` against facts reported by unsquashfs, dumpe2fs, cpio, stat and file.

mod support;

use std::path::Path;

use support::*;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn json(path: &str) -> serde_json::Value {
    let run = imagetool(&["inspect", "--json", path]);
    run.ok();
    serde_json::from_str(&run.stdout).expect("inspect --json prints JSON")
}

#[test]
fn cpio_entries_match_gnu_cpio_listing() {
    let t = tempdir();
    let d = t.path();
    let sq = squashfs(d, "u.squashfs", "gzip");
    let root = pxe_root(d, "root", &[(&sq, "usr.squashfs")]);
    cpio_dotslash(d, &root, "pxe.cpio");
    sh(
        d,
        "mkdir -p oem/usr/share/oem && echo '{}' > oem/usr/share/oem/config.ign && (cd oem && find . | cpio -o -H newc --quiet) | xz > oem.cpio.xz && gzip -k pxe.cpio && cat pxe.cpio.gz oem.cpio.xz > both",
    );
    let v = json(&p(d, "both"));
    assert_eq!(v["type"], "cpio");
    let segs: Vec<&str> = v["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["format"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(segs, ["gzip", "xz"]);
    // Names and sizes as GNU cpio lists them (it prints names without ./).
    let listing = sh(
        d,
        "(gzip -dc pxe.cpio.gz; xz -dc oem.cpio.xz) | cpio -tv --quiet 2>/dev/null || true",
    );
    let ours: Vec<(String, u64)> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("./")
                    .to_string(),
                e["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let theirs: Vec<(String, u64)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.last()?.trim_start_matches("./").to_string(),
                f.get(4)?.parse().ok()?,
            ))
        })
        .collect();
    // cpio -t stops at the first trailer; compare what it lists, then the OEM entries by name.
    assert!(!theirs.is_empty());
    assert_eq!(&ours[..theirs.len()], &theirs[..]);
    assert!(ours.iter().any(|(n, _)| n == "usr/share/oem/config.ign"));
    let text = imagetool(&["inspect", &p(d, "both")]);
    assert!(
        text.ok().stdout.contains("2 cpio segment(s) [gzip, xz]"),
        "{}",
        text.stdout
    );
}

#[test]
fn squashfs_facts_match_unsquashfs() {
    let t = tempdir();
    let d = t.path();
    squashfs(d, "u.squashfs", "zstd");
    let v = json(&p(d, "u.squashfs"));
    let sb = &v["superblock"];
    let facts = sh(d, "unsquashfs -s u.squashfs");
    assert_eq!(v["type"], "squashfs");
    assert!(
        facts.contains(&format!("Number of inodes {}", sb["inodes"])),
        "{facts}\n{sb}"
    );
    assert!(
        facts.contains(&format!("Block size {}", sb["block_size"])),
        "{facts}"
    );
    assert!(
        facts.contains(&format!("Filesystem size {} bytes", sb["bytes_used"])),
        "{facts}"
    );
    assert!(facts.contains("Compression zstd") && sb["compression"] == "zstd");
    assert!(v["problem"].is_null());
    // Cut short: inspect still describes it, and says what is wrong.
    sh(d, "head -c 50000 u.squashfs > cut.squashfs");
    let text = imagetool(&["inspect", &p(d, "cut.squashfs")]);
    assert!(
        text.ok()
            .stdout
            .contains("PROBLEM: the squashfs image is truncated"),
        "{}",
        text.stdout
    );
}

#[test]
fn ext4_facts_match_dumpe2fs() {
    let t = tempdir();
    let d = t.path();
    sh(d, "truncate -s 300M e.img && mkfs.ext4 -q -L myroot e.img");
    let v = json(&p(d, "e.img"));
    let facts = sh(d, "dumpe2fs -h e.img 2>/dev/null");
    let sb = &v["superblock"];
    assert_eq!(v["type"], "ext4");
    assert_eq!(sb["label"], "myroot");
    assert!(
        facts.contains(&format!(
            "Filesystem UUID:          {}",
            sb["uuid"].as_str().unwrap_or("?")
        )),
        "{facts}"
    );
    assert!(
        facts.contains(&format!("Block count:              {}", sb["blocks"])),
        "{facts}"
    );
    let theirs = facts
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .expect("features line");
    let ours: Vec<&str> = sb["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for f in theirs.split_whitespace() {
        assert!(ours.contains(&f), "feature {f} missing from {ours:?}");
    }
}

#[test]
fn raw_disk_sizes_match_stat() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "truncate -s 1G disk.raw && dd if=/dev/urandom of=disk.raw bs=1M count=3 seek=100 conv=notrunc status=none",
    );
    let v = json(&p(d, "disk.raw"));
    assert_eq!(v["type"], "disk");
    let st = sh(d, "stat -c '%s %b %B' disk.raw");
    let f: Vec<u64> = st
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    assert_eq!(v["apparent_bytes"].as_u64(), Some(f[0]));
    assert_eq!(v["allocated_bytes"].as_u64(), Some(f[1] * f[2]));
    imagetool(&["inspect", &p(d, "nope")]).fails_with(&["cannot read", "nope"]);
    imagetool(&["inspect", &p(d, "")]).fails_with(&["directory"]);
}

#[test]
#[ignore = "needs the test kernel (VMCTL_TEST_KERNEL_DIR); run by scripts/test.sh"]
fn kernel_version_matches_file() {
    let dir = std::env::var("VMCTL_TEST_KERNEL_DIR")
        .expect("VMCTL_TEST_KERNEL_DIR must point at the test kernel build");
    let bz = format!("{dir}/bzImage");
    let v = json(&bz);
    assert_eq!(v["type"], "kernel");
    let file = sh(Path::new("/"), &format!("file -b {bz}"));
    let version = v["kernel"]["version"].as_str().expect("version string");
    let first = version.split_whitespace().next().expect("version");
    assert!(
        file.contains(&format!("version {first}")),
        "file(1) says {file}, we say {version}"
    );
}
