//! Everything in a PXE initrd but its /usr squashfs, as one uncompressed newc archive.

use std::io::{self, Read, Write};

use imagetool::initramfs::{self, EntryKind, Visit};

/// Copies every entry except `member` into a new archive on `out`. Returns whether there was
/// anything worth booting with: an archive of bare directories (Flatcar's `.` and `./etc`) is not.
pub fn write_without(input: impl Read, member: &str, out: &mut impl Write) -> Result<bool, String> {
    let mut ino = 1u32;
    let mut useful = false;
    let mut skipped_devices = 0u32;
    initramfs::walk(input, |entry, data| {
        if entry.raw_name == member || entry.name == initramfs::normalize_name(member) {
            return Ok(Visit::Continue);
        }
        match entry.kind {
            EntryKind::Device | EntryKind::Other => {
                // The walker does not carry device numbers; the guest's devtmpfs makes these.
                skipped_devices += 1;
                return Ok(Visit::Continue);
            }
            EntryKind::File | EntryKind::Symlink => useful = true,
            EntryKind::Directory => {}
        }
        let size = u32::try_from(entry.size)
            .map_err(|_| io::Error::other(format!("{} is over 4 GiB", entry.raw_name)))?;
        let mut w = cpio::newc::Builder::new(&entry.raw_name)
            .ino(ino)
            .mode(entry.mode)
            .nlink(if entry.kind == EntryKind::Directory {
                2
            } else {
                1
            })
            .write(&mut *out, size);
        ino += 1;
        io::copy(data, &mut w)?;
        w.finish()?;
        Ok(Visit::Continue)
    })
    .map_err(|e| e.to_string())?;
    cpio::newc::trailer(&mut *out).map_err(|e| e.to_string())?;
    if skipped_devices > 0 {
        tracing::warn!("left {skipped_devices} device node(s) out of the guest's initrd");
    }
    Ok(useful)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, mode, data)) in entries.iter().enumerate() {
            let mut w = cpio::newc::Builder::new(name)
                .ino(i as u32 + 1)
                .mode(*mode)
                .write(&mut out, data.len() as u32);
            w.write_all(data).unwrap();
            w.finish().unwrap();
        }
        cpio::newc::trailer(&mut out).unwrap();
        out
    }

    fn names(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        initramfs::walk(bytes, |e, d| {
            let mut buf = Vec::new();
            d.read_to_end(&mut buf)?;
            v.push((e.raw_name.clone(), buf));
            Ok(Visit::Continue)
        })
        .unwrap();
        v
    }

    #[test]
    fn keeps_everything_but_usr_across_appended_archives() {
        let mut input = archive(&[
            (".", 0o40755, b""),
            ("./etc", 0o40755, b""),
            ("./usr.squashfs", 0o100644, b"hsqs-not-really"),
        ]);
        input.extend_from_slice(&[0u8; 8]);
        input.extend(archive(&[
            ("usr/share/oem", 0o40755, b""),
            ("usr/share/oem/config.ign", 0o100644, b"{\"ignition\":{}}"),
        ]));
        let mut out = Vec::new();
        assert!(write_without(&input[..], "./usr.squashfs", &mut out).unwrap());
        let got = names(&out);
        let listed: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            listed,
            [".", "./etc", "usr/share/oem", "usr/share/oem/config.ign"]
        );
        assert_eq!(got[3].1, b"{\"ignition\":{}}");
    }

    #[test]
    fn bare_directories_are_not_worth_an_initrd() {
        let input = archive(&[
            (".", 0o40755, b""),
            ("./etc", 0o40755, b""),
            ("./usr.squashfs", 0o100644, b"x"),
        ]);
        let mut out = Vec::new();
        assert!(!write_without(&input[..], "./usr.squashfs", &mut out).unwrap());
    }
}
