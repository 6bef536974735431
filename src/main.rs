use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use fluxgate::cli::{Cli, Command, LogFormat};
use fluxgate::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log_level);
    // kube and the webhook both use rustls; pick the provider once for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = match cli.command {
        Command::Serve(args) => block_on(commands::serve(*args)),
        Command::Mutate(args) => commands::mutate(&args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Report(args) => commands::report(&args, &mut stdout.lock()),
        Command::Certs(args) => commands::certs(&args, &mut stdout.lock()),
        Command::Cleanup(args) => block_on(commands::cleanup(*args, &mut std::io::stdout())),
        Command::Restore(args) => block_on(commands::restore(args, &mut std::io::stdout())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(stderr.lock(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn init_tracing(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
