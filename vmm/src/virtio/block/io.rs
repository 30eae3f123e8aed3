//! The disk image behind a virtio-blk device, and carrying out parsed requests on it.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::Bytes;
use vmm_sys_util::fallocate::{FallocateMode, fallocate};

use super::error_log::ErrorLog;
use super::request::{Request, RequestKind, SECTOR_SHIFT, SectorRange};
use crate::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot open disk {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {0} is in use by another process (it is locked)")]
    Locked(PathBuf),
    #[error("disk {path} is {size} bytes; at least one 512-byte sector is needed")]
    TooSmall { path: PathBuf, size: u64 },
}

/// An open disk image.
pub struct DiskFile {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
    errors: ErrorLog,
}

/// Keeps the errno of a failed file access (ENOSPC, EIO) that guest memory's I/O wraps.
fn file_error(e: vm_memory::GuestMemoryError) -> std::io::Error {
    match e {
        vm_memory::GuestMemoryError::IOError(e) => e,
        e => std::io::Error::other(e.to_string()),
    }
}

impl DiskFile {
    /// Opens the image and takes an advisory lock (shared when read-only, exclusive
    /// otherwise) so two VMs cannot write one image.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: path.to_owned(),
                source,
            })?;
        let op = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor we own, with constant flags; no memory is involved.
        let ret = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if ret != 0 {
            return Err(DiskError::Locked(path.to_owned()));
        }
        let size = file
            .metadata()
            .map_err(|source| DiskError::Open {
                path: path.to_owned(),
                source,
            })?
            .len();
        let sectors = size >> SECTOR_SHIFT;
        if sectors == 0 {
            return Err(DiskError::TooSmall {
                path: path.to_owned(),
                size,
            });
        }
        if size % 512 != 0 {
            tracing::warn!(
                "disk {}: size is not a multiple of 512; the last {} bytes are not visible",
                path.display(),
                size % 512
            );
        }
        Ok(DiskFile {
            file,
            path: path.to_owned(),
            sectors,
            read_only,
            errors: ErrorLog::default(),
        })
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn flush(&self) -> std::io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn read_into(
        &mut self,
        mem: &GuestMemoryMmap,
        sector: u64,
        req: &Request,
    ) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(sector << SECTOR_SHIFT))?;
        for seg in &req.data {
            mem.read_exact_volatile_from(seg.addr, &mut self.file, seg.len as usize)
                .map_err(file_error)?;
        }
        Ok(())
    }

    fn write_from(
        &mut self,
        mem: &GuestMemoryMmap,
        sector: u64,
        req: &Request,
    ) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(sector << SECTOR_SHIFT))?;
        for seg in &req.data {
            mem.write_all_volatile_to(seg.addr, &mut self.file, seg.len as usize)
                .map_err(file_error)?;
        }
        Ok(())
    }

    /// Punches the ranges out, so they read as zeroes and take no space. Where the host
    /// filesystem cannot punch holes, write-zeroes falls back to writing zeroes.
    fn punch(&mut self, ranges: &[SectorRange], must_zero: bool) -> std::io::Result<()> {
        for r in ranges {
            let offset = r.sector << SECTOR_SHIFT;
            let len = u64::from(r.sectors) << SECTOR_SHIFT;
            match fallocate(&self.file, FallocateMode::PunchHole, true, offset, len) {
                Ok(()) => {}
                Err(e) if must_zero && e.errno() == libc::EOPNOTSUPP => {
                    self.write_zeroes(offset, len)?
                }
                Err(e) => return Err(std::io::Error::from_raw_os_error(e.errno())),
            }
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        const CHUNK: u64 = 64 << 10;
        let zeroes = vec![0u8; CHUNK as usize];
        self.file.seek(SeekFrom::Start(offset))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            self.file.write_all(&zeroes[..n as usize])?;
            left -= n;
        }
        Ok(())
    }
}

/// The outcome of one request: the status byte and how many bytes the device wrote into the
/// guest's buffers (for the used ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub status: u8,
    pub written: u32,
}

/// Carries out a parsed request. `id` is the serial for GET_ID (None: unsupported).
pub fn execute(
    req: &Request,
    disk: &mut DiskFile,
    mem: &GuestMemoryMmap,
    id: Option<&[u8; VIRTIO_BLK_ID_BYTES as usize]>,
) -> Completion {
    let (what, result) = run(req, disk, mem, id);
    match result {
        Ok(c) => {
            disk.errors.succeeded(&disk.path, what);
            c
        }
        Err(e) => {
            disk.errors.failed(&disk.path, what, &e);
            Completion {
                status: VIRTIO_BLK_S_IOERR as u8,
                written: 0,
            }
        }
    }
}

/// Carries out the request; names the operation for the error log.
fn run(
    req: &Request,
    disk: &mut DiskFile,
    mem: &GuestMemoryMmap,
    id: Option<&[u8; VIRTIO_BLK_ID_BYTES as usize]>,
) -> (&'static str, std::io::Result<Completion>) {
    let ok = |written| Completion {
        status: VIRTIO_BLK_S_OK as u8,
        written,
    };
    match &req.kind {
        RequestKind::In { sector } => (
            "read",
            disk.read_into(mem, *sector, req).map(|()| ok(req.data_len)),
        ),
        RequestKind::Out { sector } => {
            ("write", disk.write_from(mem, *sector, req).map(|()| ok(0)))
        }
        RequestKind::Flush => ("flush", disk.flush().map(|()| ok(0))),
        RequestKind::GetId => {
            let Some(id) = id else {
                return (
                    "get-id",
                    Ok(Completion {
                        status: VIRTIO_BLK_S_UNSUPP as u8,
                        written: 0,
                    }),
                );
            };
            let mut written = 0u32;
            for seg in &req.data {
                let start = written as usize;
                if start >= id.len() {
                    break;
                }
                let n = (seg.len as usize).min(id.len() - start);
                if let Err(e) = mem.write_slice(&id[start..start + n], seg.addr) {
                    return ("get-id", Err(std::io::Error::other(e.to_string())));
                }
                written += n as u32;
            }
            ("get-id", Ok(ok(written)))
        }
        RequestKind::Discard(ranges) => ("discard", disk.punch(ranges, false).map(|()| ok(0))),
        RequestKind::WriteZeroes(ranges) => {
            ("write-zeroes", disk.punch(ranges, true).map(|()| ok(0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::block::request::Segment;
    use std::os::unix::fs::MetadataExt;
    use vm_memory::GuestAddress;

    fn disk(len: usize) -> (tempfile::NamedTempFile, DiskFile) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            (0..len).map(|i| (i / 512) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let d = DiskFile::open(f.path(), false).unwrap();
        (f, d)
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn req(kind: RequestKind, data: Vec<Segment>) -> Request {
        let data_len = data.iter().map(|s| s.len).sum();
        Request {
            kind,
            data,
            data_len,
            status: GuestAddress(0xf000),
        }
    }

    #[test]
    fn read_scatters_into_segments() {
        let (_f, mut d) = disk(8 * 512);
        let m = mem();
        let r = req(
            RequestKind::In { sector: 2 },
            vec![
                Segment {
                    addr: GuestAddress(0x1000),
                    len: 512,
                },
                Segment {
                    addr: GuestAddress(0x5000),
                    len: 512,
                },
            ],
        );
        assert_eq!(
            execute(&r, &mut d, &m, None),
            Completion {
                status: 0,
                written: 1024
            }
        );
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 2);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x51ff)).unwrap(), 3);
    }

    #[test]
    fn write_then_flush_lands_in_the_file() {
        let (f, mut d) = disk(8 * 512);
        let m = mem();
        m.write_slice(&[0xaa; 512], GuestAddress(0x2000)).unwrap();
        let r = req(
            RequestKind::Out { sector: 5 },
            vec![Segment {
                addr: GuestAddress(0x2000),
                len: 512,
            }],
        );
        assert_eq!(execute(&r, &mut d, &m, None).status, 0);
        assert_eq!(
            execute(&req(RequestKind::Flush, vec![]), &mut d, &m, None).status,
            0
        );
        let bytes = std::fs::read(f.path()).unwrap();
        assert!(bytes[5 * 512..6 * 512].iter().all(|b| *b == 0xaa));
        assert_eq!(bytes[4 * 512], 4);
    }

    #[test]
    fn get_id_writes_the_serial_or_is_unsupported() {
        let (_f, mut d) = disk(512);
        let m = mem();
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(b"usr0");
        let r = req(
            RequestKind::GetId,
            vec![Segment {
                addr: GuestAddress(0x3000),
                len: 20,
            }],
        );
        assert_eq!(
            execute(&r, &mut d, &m, Some(&id)),
            Completion {
                status: 0,
                written: 20
            }
        );
        let mut got = [0u8; 20];
        m.read_slice(&mut got, GuestAddress(0x3000)).unwrap();
        assert_eq!(got, id);
        assert_eq!(execute(&r, &mut d, &m, None).status, 2);
    }

    #[test]
    fn write_zeroes_punches_holes_and_keeps_the_size() {
        let (f, mut d) = disk(1 << 20);
        let m = mem();
        let before = std::fs::metadata(f.path()).unwrap();
        let r = req(
            RequestKind::WriteZeroes(vec![SectorRange {
                sector: 0,
                sectors: 1024,
                unmap: true,
            }]),
            vec![],
        );
        assert_eq!(execute(&r, &mut d, &m, None).status, 0);
        let after = std::fs::metadata(f.path()).unwrap();
        assert_eq!(after.len(), before.len());
        let bytes = std::fs::read(f.path()).unwrap();
        assert!(bytes[..512 * 1024].iter().all(|b| *b == 0));
        // On filesystems that punch holes the blocks are released (tmpfs and ext4 do).
        assert!(
            after.blocks() < before.blocks(),
            "{} -> {}",
            before.blocks(),
            after.blocks()
        );
    }

    #[test]
    fn second_writer_is_locked_out_but_readers_share() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), [0u8; 1024]).unwrap();
        let _a = DiskFile::open(f.path(), true).unwrap();
        let _b = DiskFile::open(f.path(), true).unwrap();
        assert!(matches!(
            DiskFile::open(f.path(), false),
            Err(DiskError::Locked(_))
        ));
    }

    #[test]
    fn failed_writes_keep_their_errno_and_are_logged_once() {
        // A write the host refuses (here: the image is open read-only, EBADF) gives the guest
        // IOERR, and the log keeps the errno (ENOSPC on a full filesystem) and counts repeats.
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), [7u8; 4096]).unwrap();
        let mut d = DiskFile::open(f.path(), true).unwrap();
        let m = mem();
        let r = req(
            RequestKind::Out { sector: 1 },
            vec![Segment {
                addr: GuestAddress(0x2000),
                len: 512,
            }],
        );
        let e = d.write_from(&m, 1, &r).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        for _ in 0..5 {
            assert_eq!(execute(&r, &mut d, &m, None).status, 1);
        }
        assert_eq!(d.errors.repeats("write"), 4);
        assert_eq!(std::fs::read(f.path()).unwrap(), vec![7u8; 4096]);
    }

    #[test]
    fn empty_image_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            DiskFile::open(f.path(), true),
            Err(DiskError::TooSmall { .. })
        ));
    }
}
