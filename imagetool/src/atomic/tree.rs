use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::{cleanup, parent_dir};

/// Makes a rename or a new directory entry durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A directory tree built under a temporary name beside its destination and swapped into place
/// in one step (`renameat2(RENAME_EXCHANGE)`), so readers see the old tree or the new one, never a mix.
pub struct AtomicTree {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicTree {
    pub fn create(dest: &Path) -> io::Result<Self> {
        let dir = parent_dir(dest);
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "output path names no directory",
            )
        })?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".part")
            .tempdir_in(dir)?
            .keep();
        cleanup::register(&tmp);
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// Where to build the new tree.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the new tree in place; an old tree at the destination is swapped out and removed.
    pub fn commit(mut self) -> io::Result<()> {
        for entry in walk(&self.tmp)? {
            File::open(&entry)?.sync_all()?;
        }
        let existed = self.dest.symlink_metadata().is_ok();
        let flags = if existed {
            RenameFlags::EXCHANGE
        } else {
            RenameFlags::NOREPLACE
        };
        renameat_with(CWD, &self.tmp, CWD, &self.dest, flags)?;
        self.committed = true;
        fsync_dir(parent_dir(&self.dest))?;
        // After an exchange the temporary name holds the old tree.
        let result = if existed {
            std::fs::remove_dir_all(&self.tmp)
        } else {
            Ok(())
        };
        cleanup::unregister(&self.tmp);
        result
    }
}

/// Every file and directory below `root`, directories after their contents.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.extend(walk(&entry.path())?);
        } else if entry.file_type()?.is_file() {
            out.push(entry.path());
        }
    }
    out.push(root.to_path_buf());
    Ok(out)
}

impl Drop for AtomicTree {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
            cleanup::unregister(&self.tmp);
        }
    }
}
