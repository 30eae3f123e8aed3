//! `vm@.service` and `vmnet@.service`, from the templates in configs/systemd/, with this vmctl's
//! path (and `VMCTL_HOME` when set) filled in.

use std::path::{Path, PathBuf};

use imagetool::atomic::{AtomicFile, Overwrite};

pub const VM_TEMPLATE: &str = include_str!("../../../configs/systemd/vm@.service");
pub const NET_TEMPLATE: &str = include_str!("../../../configs/systemd/vmnet@.service");
pub const DEFAULT_DIR: &str = "/etc/systemd/system";

fn systemd_quote(s: &str) -> String {
    // Quoted when it holds anything systemd would split or expand.
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:".contains(c))
    {
        s.to_string()
    } else {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
        )
    }
}

pub fn render(template: &str, vmctl: &Path, home: Option<&Path>) -> String {
    let env = match home {
        Some(h) => format!(
            "Environment={}\n",
            systemd_quote(&format!("VMCTL_HOME={}", h.display()))
        ),
        None => String::new(),
    };
    template
        .replace("@VMCTL@", &systemd_quote(&vmctl.display().to_string()))
        .replace("@ENVIRONMENT@\n", &env)
}

/// Writes both units into `dir`; returns their paths.
pub fn install(dir: &Path, vmctl: &Path, home: Option<&Path>) -> std::io::Result<Vec<PathBuf>> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, template) in [
        ("vm@.service", VM_TEMPLATE),
        ("vmnet@.service", NET_TEMPLATE),
    ] {
        let path = dir.join(name);
        let mut f = AtomicFile::create(&path, Overwrite::Allow)?;
        f.file()
            .write_all(render(template, vmctl, home).as_bytes())?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.temp_path(), std::fs::Permissions::from_mode(0o644))?;
        }
        f.commit()?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_path_and_home() {
        let u = render(
            VM_TEMPLATE,
            Path::new("/usr/local/bin/vmctl"),
            Some(Path::new("/srv/vm state")),
        );
        assert!(u.contains("ExecStart=/usr/local/bin/vmctl run %i\n"), "{u}");
        assert!(
            u.contains("Environment=\"VMCTL_HOME=/srv/vm state\"\n"),
            "{u}"
        );
        let plain = render(
            VM_TEMPLATE,
            Path::new("/usr/bin/vmctl"),
            Some(Path::new("/srv/vm")),
        );
        assert!(
            plain.contains("Environment=VMCTL_HOME=/srv/vm\n"),
            "{plain}"
        );
        assert!(u.contains("Type=notify"));
        assert!(u.contains("Restart=on-failure"));
        assert!(
            !u.contains('@') || u.contains("vm@"),
            "placeholders left: {u}"
        );
        let n = render(NET_TEMPLATE, Path::new("/usr/bin/vmctl"), None);
        assert!(n.contains("ExecStop=/usr/bin/vmctl net down %i"));
        assert!(!n.contains("@ENVIRONMENT@") && !n.contains("Environment="));
    }
}
