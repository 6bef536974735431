use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use fluxgate::cli::{Cli, Command, LogFormat};
use fluxgate::{commands, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log_level);
    keep_allocator_thresholds_fixed();
    // kube and the webhook both use rustls; pick the provider once for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = match cli.command {
        Command::Serve(args) => block_on(serve::serve(*args)),
        Command::Mutate(args) => commands::mutate(&args, &mut stdout.lock(), &mut stderr.lock()),
        Command::AdmissionPolicy(args) => {
            commands::admission_policy(&args, &mut stdout.lock(), &mut stderr.lock())
        }
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

/// glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), and its
/// trim threshold with it. After the first scrape of a large cluster, each scrape's multi-megabyte
/// buffers then come from the heap and stay resident: at 100k GitRepositories RSS climbed from 53
/// to 80 MiB over five scrapes. Setting the threshold (to glibc's own starting value) turns that
/// adjustment off, so large blocks are mapped and given back when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_allocator_thresholds_fixed() {
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("could not fix the allocator's mmap threshold; RSS may grow after scrapes");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_allocator_thresholds_fixed() {}

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
