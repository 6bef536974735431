//! Sockets: the TLS webhook listener, the plain-HTTP operations listener, and the shutdown drain.

pub mod ops;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tokio::task::JoinHandle;

/// Connection-level timeouts that keep slow or idle clients from holding sockets.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TLS handshake must complete within this.
    pub handshake_timeout: Duration,
    /// Request headers (and the first request on a connection) must arrive within this.
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_streams: 250,
        }
    }
}

/// A server accepting connections in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish for up to `drain`, then closes the rest.
    pub async fn shutdown(self, drain: Duration) -> io::Result<()> {
        self.handle.graceful_shutdown(Some(drain));
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        }
    }

    /// Connections currently open (for draining diagnostics).
    pub fn connection_count(&self) -> usize {
        self.handle.connection_count()
    }
}

/// Binds `addr` and serves `router` over TLS with `config` (which may be reloaded later).
pub async fn spawn_tls(
    addr: SocketAddr,
    config: RustlsConfig,
    router: Router,
    limits: ConnectionLimits,
) -> io::Result<RunningServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let acceptor = RustlsAcceptor::new(config).handshake_timeout(limits.handshake_timeout);
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .first_request_timeout(limits.header_read_timeout);
    configure_http(&mut server, limits);
    let handle = Handle::new();
    let server = server.handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(router.into_make_service()).await });
    await_listening(handle, task).await
}

/// Binds `addr` and serves `router` over plain HTTP.
pub async fn spawn_plain(
    addr: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
) -> io::Result<RunningServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let mut server =
        axum_server::from_tcp(listener)?.first_request_timeout(limits.header_read_timeout);
    configure_http(&mut server, limits);
    let handle = Handle::new();
    let server = server.handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(router.into_make_service()).await });
    await_listening(handle, task).await
}

fn configure_http<A>(server: &mut axum_server::Server<SocketAddr, A>, limits: ConnectionLimits) {
    let builder = server.http_builder();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
}

async fn await_listening(
    handle: Handle<SocketAddr>,
    task: JoinHandle<io::Result<()>>,
) -> io::Result<RunningServer> {
    match handle.listening().await {
        Some(addr) => Ok(RunningServer { addr, handle, task }),
        None => match task.await {
            Ok(Err(err)) => Err(err),
            _ => Err(io::Error::other("server failed to start listening")),
        },
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Waits for `signal`, then turns readiness off, waits `delay` for endpoints to drop this
/// replica, and drains `servers` in order.
pub async fn drain_on<F: Future<Output = ()>>(
    signal: F,
    readiness: &ops::Readiness,
    delay: Duration,
    drain: Duration,
    servers: Vec<RunningServer>,
) -> io::Result<()> {
    signal.await;
    readiness.begin_shutdown();
    tracing::info!(
        delay_seconds = delay.as_secs_f64(),
        "readiness off; draining soon"
    );
    tokio::time::sleep(delay).await;
    let mut first_error = None;
    for server in servers {
        let addr = server.addr;
        let open = server.connection_count();
        if let Err(err) = server.shutdown(drain).await {
            tracing::warn!(%addr, error = %err, "server ended with an error");
            first_error.get_or_insert(err);
        } else {
            tracing::info!(%addr, connections_at_start = open, "drained");
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// How a replica stops: readiness off, a delay for endpoints to drop it, then a bounded drain.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// After SIGTERM, how long /readyz reports not-ready before listeners stop accepting.
    #[arg(long, env = "FLUXGATE_SHUTDOWN_DELAY", default_value = "5s", value_parser = crate::duration::parse_flag)]
    pub shutdown_delay: Duration,

    /// After the delay, how long in-flight requests may take to finish.
    #[arg(long, env = "FLUXGATE_DRAIN_TIMEOUT", default_value = "20s", value_parser = crate::duration::parse_flag)]
    pub drain_timeout: Duration,
}
