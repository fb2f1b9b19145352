//! The `porter` binary: parse the command line, run the subcommand, turn its error into an exit code.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use porter::cli::{Cli, Command, ProxyArgs};
use porter::config_file::{self, ConfigSource};

/// env_logger's default line, `[time LEVEL target] message`, with the message's control characters
/// and bidi overrides escaped (messages quote hosts and URLs); the newlines of messages Porter
/// writes over several lines are kept.
fn log_line(buf: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let level = buf.default_level_style(record.level());
    let message = record.args().to_string();
    writeln!(
        buf,
        "[{} {level}{:<5}{level:#} {}] {}",
        buf.timestamp(),
        record.level(),
        record.target(),
        porter::printable::escape_except(&message, &['\n'])
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(log_line)
        .init();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Proxy(args) => return proxy(&args),
        Command::Cache(args) => {
            porter::cache::admin::run(&args.cache_dir, &args.action.into_command())
                .map(|text| print!("{text}"))
                .map_err(Into::into)
        }
        Command::Ca(args) => args.run().map_err(Into::into),
        Command::Fetch(args) => {
            // Its exit status says what kind of failure it was (an HTTP error status is 8).
            return match args.into_config().and_then(porter::tools::fetch::run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("porter: {error}");
                    ExitCode::from(error.exit_code())
                }
            };
        }
        Command::Upper(args) => porter::tools::upper::run(args.into_config()).map_err(Into::into),
        Command::Serve(args) => porter::tools::serve::run(args.into_config()).map_err(Into::into),
        Command::Completions(args) => args.run().map_err(Into::into),
        Command::Docs(args) => args.run().map_err(Into::into),
        Command::Passwd(args) => args.run().map(|text| print!("{text}")).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("porter: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `porter proxy`: the configuration from `--config` under the command line, `--check`, then the
/// proxy, which can read both again on SIGHUP. A configuration mistake exits 2.
fn proxy(args: &ProxyArgs) -> ExitCode {
    let source = ConfigSource {
        file: args.config.clone(),
        command_line: proxy_arguments(),
    };
    let loaded = match config_file::load(&source) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("porter: {error}");
            return ExitCode::from(2);
        }
    };
    let check = loaded.args.check;
    let effective = check.then(|| config_file::effective_toml(&loaded));
    let config = match loaded.args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("porter: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(text) = effective {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let reloader: porter::proxy::live::Reloader =
        Box::new(move || config_file::load_config(&source).map_err(|e| e.to_string()));
    match porter::proxy::run(config, Some(reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("porter: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The arguments after the `proxy` subcommand (the only options before it are --help and --version,
/// which exit before this runs).
fn proxy_arguments() -> Vec<OsString> {
    std::env::args_os()
        .skip(1)
        .skip_while(|arg| arg != "proxy")
        .skip(1)
        .collect()
}
