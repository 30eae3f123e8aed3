//! The content-addressed image store, shared by every cluster: `images/blobs/sha256-HEX`, written
//! once and kept read-only. For a PXE initrd it holds the extracted `usr.squashfs` and, when the
//! archive carries anything else (Flatcar may append an `oem` archive), a small initrd of the
//! rest: the guest boots as it would with PXE, but /usr is a shared disk instead of RAM.
//! `images/sources/SHA.json` remembers what an initrd gave, so it is extracted only once.

mod rest_initrd;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use imagetool::atomic::{AtomicFile, Overwrite};
use imagetool::digest::{HashingWriter, sha256_file};
use imagetool::extract::{ExtractError, ExtractOptions, extract_usr};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::lock::{self, LockError};
use crate::state::{self, StateError};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("cannot write to the image store {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error("{path}: {err}")]
    Extract { path: PathBuf, err: ExtractError },
    #[error("{path}: {err}")]
    Rest { path: PathBuf, err: String },
    #[error("{path} changed while it was being copied into the image store: run vmctl up again")]
    Changed { path: PathBuf },
}

/// The blobs a cluster boots from: shared, read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    pub kernel: PathBuf,
    pub usr: Option<PathBuf>,
    /// What the PXE initrd holds besides /usr, as its own initrd.
    pub initrd: Option<PathBuf>,
}

/// What an ingested initrd gave, by its digest.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SourceEntry {
    usr: String,
    rest: Option<String>,
    member: String,
}

pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Self {
        Store { root }
    }

    pub fn blob(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(format!("sha256-{digest}"))
    }

    fn source_entry(&self, digest: &str) -> PathBuf {
        self.root.join("sources").join(format!("{digest}.json"))
    }

    /// Puts the kernel and the initrd's parts in the store (once) and returns their paths.
    pub fn ingest(
        &self,
        kernel: &Path,
        initrd: Option<&Path>,
        lock_timeout: Duration,
    ) -> Result<Images, StoreError> {
        for d in ["blobs", "sources", "tmp"] {
            state::create_dir(&self.root.join(d))?;
        }
        let _lock = lock::acquire(
            &self.root.join("lock"),
            "the image store",
            "adding an image",
            lock_timeout,
        )?;
        let kernel = self.add_file(kernel)?;
        let (usr, initrd) = match initrd {
            Some(p) => {
                let (usr, rest) = self.add_initrd(p)?;
                (Some(usr), rest)
            }
            None => (None, None),
        };
        Ok(Images {
            kernel,
            usr,
            initrd,
        })
    }

    fn add_file(&self, src: &Path) -> Result<PathBuf, StoreError> {
        let digest = sha256_file(src).map_err(|err| StoreError::Read {
            path: src.to_path_buf(),
            err,
        })?;
        let dest = self.blob(&digest);
        if dest.is_file() {
            return Ok(dest);
        }
        let werr = |err| StoreError::Write {
            path: dest.clone(),
            err,
        };
        let mut out = AtomicFile::create(&dest, Overwrite::Allow).map_err(werr)?;
        let mut input = File::open(src).map_err(|err| StoreError::Read {
            path: src.to_path_buf(),
            err,
        })?;
        let mut w = HashingWriter::new(out.file());
        io::copy(&mut input, &mut w).map_err(werr)?;
        let (_, copied) = w.finish();
        if copied != digest {
            return Err(StoreError::Changed {
                path: src.to_path_buf(),
            });
        }
        seal(&out).map_err(werr)?;
        out.commit().map_err(werr)?;
        Ok(dest)
    }

    fn add_initrd(&self, src: &Path) -> Result<(PathBuf, Option<PathBuf>), StoreError> {
        let digest = sha256_file(src).map_err(|err| StoreError::Read {
            path: src.to_path_buf(),
            err,
        })?;
        let entry_path = self.source_entry(&digest);
        if let Some(e) = state::read_json::<SourceEntry>(&entry_path)? {
            let usr = self.blob(&e.usr);
            let rest = e.rest.as_deref().map(|d| self.blob(d));
            if usr.is_file() && rest.as_ref().is_none_or(|r| r.is_file()) {
                return Ok((usr, rest));
            }
        }
        tracing::info!("extracting /usr from {}", src.display());
        let tmp = self.root.join("tmp").join(format!("usr-{digest}"));
        let input = File::open(src).map_err(|err| StoreError::Read {
            path: src.to_path_buf(),
            err,
        })?;
        let total = input.metadata().map(|m| m.len()).ok();
        let bar = imagetool::progress::bytes(total, "extract /usr");
        let report = extract_usr(input, &tmp, &ExtractOptions::default(), |n| {
            bar.set_position(n)
        })
        .map_err(|err| StoreError::Extract {
            path: src.to_path_buf(),
            err,
        })?;
        bar.finish_and_clear();
        let usr = self.blob(&report.sha256);
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |err| StoreError::Write { path, err }
        };
        let _ = std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444));
        std::fs::rename(&tmp, &usr).map_err(werr(&usr))?;

        let rest = self.add_rest(src, &report.member)?;
        state::write_json(
            &entry_path,
            &SourceEntry {
                usr: report.sha256,
                rest: rest.clone(),
                member: report.member,
            },
        )?;
        Ok((usr, rest.map(|d| self.blob(&d))))
    }

    fn add_rest(&self, src: &Path, member: &str) -> Result<Option<String>, StoreError> {
        let tmp_path = self.root.join("tmp").join("initrd");
        let werr = |err| StoreError::Write {
            path: tmp_path.clone(),
            err,
        };
        let mut out = AtomicFile::create(&tmp_path, Overwrite::Allow).map_err(werr)?;
        let input = File::open(src).map_err(|err| StoreError::Read {
            path: src.to_path_buf(),
            err,
        })?;
        let mut w = HashingWriter::new(io::BufWriter::new(out.file()));
        let kept =
            rest_initrd::write_without(input, member, &mut w).map_err(|err| StoreError::Rest {
                path: src.to_path_buf(),
                err,
            })?;
        if !kept {
            return Ok(None);
        }
        let (mut buf, digest) = w.finish();
        buf.flush().map_err(werr)?;
        drop(buf);
        let dest = self.blob(&digest);
        if dest.is_file() {
            return Ok(Some(digest));
        }
        seal(&out).map_err(werr)?;
        out.commit().map_err(werr)?;
        std::fs::rename(&tmp_path, &dest).map_err(|err| StoreError::Write {
            path: dest.clone(),
            err,
        })?;
        Ok(Some(digest))
    }
}

/// Blobs are never written again once stored.
fn seal(f: &AtomicFile) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.temp_path(), std::fs::Permissions::from_mode(0o444))
}
