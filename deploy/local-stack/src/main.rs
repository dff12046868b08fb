//! `local-stack`: runs the enrichment pipeline on this machine. See the library crate doc or
//! `--help` for what it does and prints.

mod run;
mod serve;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use local_stack::cli::Args;
use local_stack::stack::{Ports, StackOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match start(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("local-stack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(args: Args) -> anyhow::Result<ExitCode> {
    enrichment_runtime::server::install_crypto_provider();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data folder {}", args.data_dir.display()))?;
    let log_path = local_stack::logs::init(&args.data_dir)?;

    let ports = if args.serve {
        Ports {
            receiver: args.receiver_port,
            sender: args.sender_port,
            sink: args.sink_port,
            partner: args.partner_port,
        }
    } else {
        Ports::default()
    };
    let options = StackOptions {
        data_dir: args.data_dir.clone(),
        ports,
        min_request_interval: args.min_request_interval(),
        retry_base_delay: args.retry_base(),
        partner_delay: args.partner_delay(),
        partner_failure_rate: args.partner_failure_rate,
        seed: args.seed,
    };

    if args.serve {
        serve::serve(&args, options, &log_path).await
    } else {
        run::run_file(&args, options, &log_path).await
    }
}
