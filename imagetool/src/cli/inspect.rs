use std::path::PathBuf;

use imagetool::inspect;

#[derive(clap::Args)]
pub struct Args {
    /// The file to look at.
    file: PathBuf,
    /// Print the facts as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let facts = inspect::inspect(&args.file)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&facts)?);
    } else {
        print!("{}", inspect::render(&facts));
    }
    Ok(())
}
