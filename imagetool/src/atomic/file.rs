use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::{cleanup, default_file_mode, parent_dir};

/// Whether committing may replace an existing destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Allow,
    Refuse,
}

/// A file being written under a temporary name in its destination's directory.
/// `commit` makes it appear at the destination; dropping it uncommitted deletes it.
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    overwrite: Overwrite,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file. With `Overwrite::Refuse` an existing destination is an
    /// `AlreadyExists` error now, before any work, and again at commit if one appeared meanwhile.
    pub fn create(dest: &Path, overwrite: Overwrite) -> io::Result<Self> {
        if overwrite == Overwrite::Refuse && dest.symlink_metadata().is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", dest.display()),
            ));
        }
        let dir = parent_dir(dest);
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "output path names no file")
        })?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let (file, tmp) = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".part")
            .tempfile_in(dir)?
            .keep()
            .map_err(|e| e.error)?;
        cleanup::register(&tmp);
        let this = Self {
            file,
            tmp,
            dest: dest.to_path_buf(),
            overwrite,
            committed: false,
        };
        this.file
            .set_permissions(Permissions::from_mode(default_file_mode()))?;
        Ok(this)
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the data to stable storage, renames it into place and syncs the directory entry.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let flags = match self.overwrite {
            Overwrite::Allow => RenameFlags::empty(),
            Overwrite::Refuse => RenameFlags::NOREPLACE,
        };
        renameat_with(CWD, &self.tmp, CWD, &self.dest, flags).map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} already exists", self.dest.display()),
                )
            } else {
                io::Error::from(e)
            }
        })?;
        self.committed = true;
        cleanup::unregister(&self.tmp);
        super::fsync_dir(parent_dir(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
            cleanup::unregister(&self.tmp);
        }
    }
}
