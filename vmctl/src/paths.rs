//! Paths as the cluster file writes them: `~` is the user's home, relative paths are relative to
//! the file (not to wherever vmctl happens to run).

use std::path::{Path, PathBuf};

/// The home directory of the user vmctl acts for.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Expands a leading `~` or `~/`; resolves the rest against `base`.
pub fn resolve(text: &str, base: &Path) -> Result<PathBuf, String> {
    let expanded = if text == "~" {
        home_dir().ok_or("cannot expand ~: HOME is not set")?
    } else if let Some(rest) = text.strip_prefix("~/") {
        home_dir()
            .ok_or("cannot expand ~: HOME is not set")?
            .join(rest)
    } else if text.starts_with('~') {
        return Err(format!(
            "{text:?}: only ~ and ~/ are expanded (not ~user); write the full path"
        ));
    } else {
        PathBuf::from(text)
    };
    Ok(if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_base_and_tilde() {
        let base = Path::new("/etc/vmctl");
        assert_eq!(
            resolve("k.img", base).unwrap(),
            PathBuf::from("/etc/vmctl/k.img")
        );
        assert_eq!(resolve("/abs", base).unwrap(), PathBuf::from("/abs"));
        let home = home_dir().unwrap();
        assert_eq!(resolve("~/x", base).unwrap(), home.join("x"));
        assert!(resolve("~bob/x", base).is_err());
    }
}
