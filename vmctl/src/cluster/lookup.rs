//! Which file `vmctl up NAME` means: `./NAME.yaml`, then `configs/NAME.yaml`, then
//! `/etc/vmctl/NAME.yaml`; an argument that looks like a path is that path. `demo` falls back to
//! the demo cluster built into the binary, so it works from any directory.

use std::path::{Path, PathBuf};

use super::ClusterError;

pub const SYSTEM_DIR: &str = "/etc/vmctl";
/// configs/demo.yaml, for `vmctl up demo` outside a checkout.
pub const BUILTIN_DEMO: &str = include_str!("../../../configs/demo.yaml");

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    BuiltinDemo,
}

/// Finds the file for `arg` relative to `cwd`, with `system_dir` standing for /etc/vmctl.
pub fn find_in(arg: &str, cwd: &Path, system_dir: &Path) -> Result<Source, ClusterError> {
    let looks_like_path = arg.contains('/') || arg.ends_with(".yaml") || arg.ends_with(".yml");
    if looks_like_path {
        let p = cwd.join(arg);
        return if p.is_file() {
            Ok(Source::File(p))
        } else {
            Err(ClusterError::NoFile {
                name: arg.to_string(),
                tried: p.display().to_string(),
            })
        };
    }
    let candidates = candidates(arg, cwd, system_dir);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(Source::File(found.clone()));
    }
    if arg == "demo" {
        return Ok(Source::BuiltinDemo);
    }
    Err(ClusterError::NoFile {
        name: arg.to_string(),
        tried: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn candidates(name: &str, cwd: &Path, system_dir: &Path) -> Vec<PathBuf> {
    vec![
        cwd.join(format!("{name}.yaml")),
        cwd.join("configs").join(format!("{name}.yaml")),
        system_dir.join(format!("{name}.yaml")),
    ]
}

pub fn find(arg: &str) -> Result<Source, ClusterError> {
    let cwd = std::env::current_dir().map_err(|e| ClusterError::Io {
        path: PathBuf::from("."),
        err: e,
    })?;
    find_in(arg, &cwd, Path::new(SYSTEM_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_is_cwd_configs_system() {
        let t = tempfile::tempdir().unwrap();
        let cwd = t.path().join("work");
        let sys = t.path().join("etc");
        std::fs::create_dir_all(cwd.join("configs")).unwrap();
        std::fs::create_dir_all(&sys).unwrap();
        let put = |p: &Path| std::fs::write(p, "name: x\n").unwrap();

        put(&sys.join("c.yaml"));
        assert_eq!(
            find_in("c", &cwd, &sys).unwrap(),
            Source::File(sys.join("c.yaml"))
        );
        put(&cwd.join("configs/c.yaml"));
        assert_eq!(
            find_in("c", &cwd, &sys).unwrap(),
            Source::File(cwd.join("configs/c.yaml"))
        );
        put(&cwd.join("c.yaml"));
        assert_eq!(
            find_in("c", &cwd, &sys).unwrap(),
            Source::File(cwd.join("c.yaml"))
        );
        // A path is taken as given, never searched for.
        assert_eq!(
            find_in("configs/c.yaml", &cwd, &sys).unwrap(),
            Source::File(cwd.join("configs/c.yaml"))
        );
        let err = find_in("nope", &cwd, &sys).unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
        assert!(
            err.contains(&sys.join("nope.yaml").display().to_string()),
            "{err}"
        );
        assert_eq!(find_in("demo", &cwd, &sys).unwrap(), Source::BuiltinDemo);
    }
}
