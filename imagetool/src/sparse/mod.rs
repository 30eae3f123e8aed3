//! Sparse-aware export and import of disk images (issue 3).
