//! Paths as the cluster file writes them: `~` is the user's home, relative paths are relative to
//! the file (not to wherever vmctl happens to run).

use std::path::{Path, PathBuf};

/// The home directory of the user vmctl acts for: under `sudo`, the invoking user's (sudo sets
/// HOME to root's, but `~/.ssh/...` in their file means theirs), else `$HOME`.
pub fn home_dir() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root()
        && let Some(user) = std::env::var("SUDO_USER").ok().filter(|u| u != "root")
        && let Some(home) = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| passwd_home(&t, &user))
    {
        return Some(home);
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The home directory of `user` in passwd(5) text.
fn passwd_home(passwd: &str, user: &str) -> Option<PathBuf> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == user)
        .map(|f| PathBuf::from(f[5]))
        .filter(|h| h.is_absolute())
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

    #[test]
    fn reads_a_users_home_from_passwd() {
        let pw =
            "root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000:Me,,,:/home/me:/bin/bash\nbad:x:1\n";
        assert_eq!(passwd_home(pw, "me"), Some(PathBuf::from("/home/me")));
        assert_eq!(passwd_home(pw, "bad"), None);
        assert_eq!(passwd_home(pw, "nobody"), None);
    }
}
