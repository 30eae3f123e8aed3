//! Recognising Linux kernels: a bzImage (x86 boot protocol header) or an ELF `vmlinux`.

/// What we know about a kernel image from its header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelInfo {
    /// `bzImage` or `elf`.
    pub format: &'static str,
    /// The boot protocol version (`2.15`) of a bzImage.
    pub protocol: Option<String>,
    /// The version string a bzImage carries (`6.1.0-28-amd64 (debian-kernel@...) #1 SMP ...`).
    pub version: Option<String>,
}

/// Looks at the first 64 KiB (or less) of a file.
pub fn detect(head: &[u8]) -> Option<KernelInfo> {
    if head.starts_with(b"\x7fELF") {
        return Some(KernelInfo {
            format: "elf",
            protocol: None,
            version: None,
        });
    }
    if head.len() < 0x210 || &head[0x202..0x206] != b"HdrS" {
        return None;
    }
    let proto = u16::from_le_bytes([head[0x206], head[0x207]]);
    let ver_ptr = usize::from(u16::from_le_bytes([head[0x20e], head[0x20f]]));
    // The pointer is relative to the end of the 512-byte boot sector.
    let version = (ver_ptr != 0)
        .then(|| head.get(ver_ptr + 0x200..))
        .flatten()
        .and_then(|s| {
            let end = s.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&s[..end]).ok().map(str::to_string)
        });
    Some(KernelInfo {
        format: "bzImage",
        protocol: Some(format!("{}.{}", proto >> 8, proto & 0xff)),
        version,
    })
}
