//! kappa-replay: rebuilds a lake generation from the log. Not built yet: it arrives with the
//! replay issue, after the consumer it reuses.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "kappa-replay", version, about = "Rebuilds the lake from the log (not available yet)")]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("error: kappa-replay is not available in this version yet; it needs the consumer's lake (see the README's roadmap)");
    std::process::exit(2);
}
