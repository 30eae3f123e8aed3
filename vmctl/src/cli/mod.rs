//! The command line: one module per verb.

mod console;
mod context;
mod destroy;
mod down;
mod export;
mod logs;
mod net;
mod run;
mod ssh;
mod status;
mod units;
mod up;

use clap::{Parser, Subcommand};

pub use context::Context;

#[derive(Debug, Parser)]
#[command(
    name = "vmctl",
    version,
    about = "Lean CoreOS-family test clusters on KVM from one YAML file",
    after_help = "Cluster files: NAME means ./NAME.yaml, configs/NAME.yaml or /etc/vmctl/NAME.yaml. \
                  State: $VMCTL_HOME (default /var/lib/vmctl). See docs/vmctl.md."
)]
pub struct Cli {
    /// The cluster to act on; not needed when only one exists. NODE arguments may also be
    /// written CLUSTER:NODE or CLUSTER-NODE.
    #[arg(short, long, global = true, value_name = "NAME", env = "VMCTL_CLUSTER")]
    pub cluster: Option<String>,
    /// Seconds to wait for another vmctl working on the same cluster.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 300)]
    pub lock_timeout: u64,
    /// More log output (-v info, -vv debug); quiet by default.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring a cluster up from its file (idempotent: running VMs are left alone).
    Up(up::Args),
    /// Show the cluster's nodes: state, address, how to reach them.
    Status(status::Args),
    /// Attach to a node's serial console (escape: Ctrl-] then q).
    Console(console::Args),
    /// ssh to a node (arguments after -- go to ssh).
    Ssh(ssh::Args),
    /// Print a node's console log.
    Logs(logs::Args),
    /// Power nodes off (all, or one), stopping them hard after --timeout.
    Down(down::Args),
    /// Stop everything and remove the cluster's disks and state (needs --yes).
    Destroy(destroy::Args),
    /// Write a node's root disk as a sparse-aware stream (gzip, zstd or raw).
    Export(export::Args),
    /// Run one node in the foreground (what vm@.service runs): ready when booted, graceful stop on SIGTERM.
    Run(run::Args),
    /// Install the systemd units vm@.service and vmnet@.service.
    Units(units::Args),
    /// The cluster network alone (what vmnet@.service runs).
    Net(net::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(cli.cluster.clone(), cli.lock_timeout);
    match cli.command {
        Command::Up(a) => up::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Console(a) => console::run(&ctx, a),
        Command::Ssh(a) => ssh::run(&ctx, a),
        Command::Logs(a) => logs::run(&ctx, a),
        Command::Down(a) => down::run(&ctx, a),
        Command::Destroy(a) => destroy::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Units(a) => units::run(&ctx, a),
        Command::Net(a) => net::run(&ctx, a),
    }
}
