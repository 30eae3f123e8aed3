use std::path::PathBuf;

use anyhow::Context;
use imagetool::configdrive::{self, ConfigDriveSpec};

#[derive(clap::Args)]
pub struct Args {
    /// The config drive's directory (shared with the guest under the tag config-2).
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long)]
    hostname: String,
    /// A public key file (authorized_keys format; several keys per file are fine). Repeatable.
    #[arg(long = "ssh-key", value_name = "FILE")]
    ssh_keys: Vec<PathBuf>,
    /// A #cloud-config YAML document or a #! script.
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// Instance UUID (random if not given).
    #[arg(long)]
    uuid: Option<uuid::Uuid>,
    /// An Ignition JSON config, checked and stored beside the tree as config.ign.
    #[arg(long, value_name = "FILE")]
    ignition: Option<PathBuf>,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut ssh_keys = Vec::new();
    for path in &args.ssh_keys {
        let text = String::from_utf8(read(path, "ssh key file")?)
            .with_context(|| format!("ssh key file {} is not text", path.display()))?;
        let lines = configdrive::key_lines(&text);
        anyhow::ensure!(
            !lines.is_empty(),
            "ssh key file {} holds no key",
            path.display()
        );
        ssh_keys.extend(lines);
    }
    let spec = ConfigDriveSpec {
        hostname: args.hostname,
        ssh_keys,
        user_data: args
            .user_data
            .as_ref()
            .map(|p| read(p, "user data"))
            .transpose()?,
        uuid: args.uuid,
        ignition: args
            .ignition
            .as_ref()
            .map(|p| read(p, "Ignition config"))
            .transpose()?,
    };
    let r = configdrive::write(&args.output, &spec)
        .with_context(|| format!("config-drive {}", args.output.display()))?;
    for w in &r.ignition_warnings {
        tracing::warn!("Ignition config: {w}");
    }
    let ud = match &r.user_data {
        Some(configdrive::UserDataKind::CloudConfig) => "#cloud-config user data",
        Some(configdrive::UserDataKind::Script) => "a user-data script",
        None => "no user data",
    };
    println!(
        "wrote {}/openstack/latest: uuid {}, {} ssh key(s){}, {ud}",
        r.dir.display(),
        r.uuid,
        r.key_names.len(),
        if r.key_names.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.key_names.join(", "))
        },
    );
    if let Some(p) = &r.ignition {
        println!("wrote {} (Ignition, for fw_cfg)", p.display());
    }
    Ok(())
}
