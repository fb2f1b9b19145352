//! The `porter` binary: parse the command line, run the subcommand, turn its error into an exit code.

use std::process::ExitCode;

use clap::Parser;
use porter::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Proxy(args) => args
            .into_config()
            .map_err(Into::into)
            .and_then(|config| porter::proxy::run(config).map_err(Into::into)),
        Command::Cache(args) => {
            porter::cache::admin::run(&args.cache_dir, &args.action.into_command())
                .map(|text| print!("{text}"))
                .map_err(Into::into)
        }
        Command::Ca(args) => args.run().map(|text| print!("{text}")).map_err(Into::into),
        Command::Fetch(args) => {
            // Its exit status says what kind of failure it was (an HTTP error status is 8).
            return match args.into_config().and_then(porter::client::run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("porter: {error}");
                    ExitCode::from(error.exit_code())
                }
            };
        }
        Command::Upper(args) => porter::upper::run(args.into_config()).map_err(Into::into),
        Command::Serve(args) => porter::origin::run(args.into_config()).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("porter: {error}");
            ExitCode::FAILURE
        }
    }
}
