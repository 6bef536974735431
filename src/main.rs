use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser as _;
use fluxgate::cli::{Cli, Command, LogFormat};
use fluxgate::{commands, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log_level);
    tune_allocator();
    // kube and the webhook both use rustls; pick the provider once for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = match cli.command {
        Command::Serve(args) => block_on(serve::serve(*args)),
        Command::Mutate(args) => {
            commands::mutate(&args, &mut Stdout(stdout.lock()), &mut stderr.lock())
        }
        Command::AdmissionPolicy(args) => {
            commands::admission_policy(&args, &mut Stdout(stdout.lock()), &mut stderr.lock())
        }
        Command::Report(args) => commands::report(&args, &mut Stdout(stdout.lock())),
        Command::Certs(args) => commands::certs(&args, &mut Stdout(stdout.lock())),
        Command::Cleanup(args) => block_on(commands::cleanup(*args, &mut Stdout(stdout))),
        Command::Restore(args) => block_on(commands::restore(*args, &mut Stdout(stdout))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`fluxgate mutate ... | head`): it has what it wanted,
        // so stop quietly and successfully, as a pipeline under `set -o pipefail` expects. Only
        // a failed write to stdout counts; a broken connection elsewhere is still an error.
        Err(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(stderr.lock(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set when a write to stdout fails because its reader closed the pipe (EPIPE: Rust ignores
/// SIGPIPE, so the write returns the error instead of the process being killed).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// stdout (or its lock), noting in [`STDOUT_CLOSED`] when its reader has gone. Recorded here
/// rather than found in the error chain, because not every writer keeps the `io::Error` there
/// (serde_json's error hides it from `source()`).
struct Stdout<W>(W);

impl<W: Write> Stdout<W> {
    fn note<T>(result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(err) = &result
            && err.kind() == std::io::ErrorKind::BrokenPipe
        {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::note(self.0.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        Self::note(self.0.write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::note(self.0.flush())
    }
}

/// Two settings of glibc's allocator, made before any other thread exists.
///
/// glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), and its
/// trim threshold with it. After the first scrape of a large cluster, each scrape's multi-megabyte
/// buffers then come from the heap and stay resident: at 100k GitRepositories RSS climbed from 53
/// to 80 MiB over five scrapes. Setting the threshold (to glibc's own starting value) turns that
/// adjustment off, so large blocks are mapped and given back when freed.
///
/// glibc also gives each thread that meets contention an arena of its own, up to eight per core,
/// and memory freed in one arena serves only that one. A breaker pass, a scrape and the watch
/// run on different threads, so each kept its own high-water mark: at 100k GitRepositories peak
/// RSS was 62.2–62.5 MiB with the default and 57.9–59.6 MiB with one arena (BENCHMARKS.md).
/// Small blocks still come from per-thread caches without a lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("could not fix the allocator's mmap threshold; RSS may grow after scrapes");
    }
    // SAFETY: as above.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } != 1 {
        tracing::warn!("could not limit the allocator to one arena; peak RSS may be higher");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

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
