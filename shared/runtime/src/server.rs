//! Serving a router: an HTTP server on `0.0.0.0:$PORT` (or `$BIND_ADDRESS:$PORT`) for Cloud
//! Run, or the AWS Lambda runtime through `lambda_http` when `AWS_LAMBDA_RUNTIME_API` is set.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{ConfigError, Env};

/// The variable that contains the listen port.
pub const PORT: &str = "PORT";
/// Port used when `PORT` is unset (Cloud Run's default).
pub const DEFAULT_PORT: u16 = 8080;
/// The variable that contains the listen address. Tests set it to `127.0.0.1`.
pub const BIND_ADDRESS: &str = "BIND_ADDRESS";
/// Set by AWS Lambda to the runtime API address; its presence selects the Lambda runtime.
pub const AWS_LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("AWS Lambda runtime failed: {0}")]
    Lambda(String),
}

/// Installs aws-lc-rs as the process-wide rustls crypto provider.
///
/// rustls is compiled with both ring (from the BigQuery client) and aws-lc-rs (from the Google
/// crates and reqwest), so it cannot pick one itself, and a TLS client built without an explicit
/// provider panics. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what the caller wants.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads `PORT`, or returns 8080 when it is unset.
pub fn port_from_env(env: &Env) -> Result<u16, ConfigError> {
    env.parse_or(PORT, DEFAULT_PORT)
}

/// Reads `BIND_ADDRESS` as an IP address, or returns `0.0.0.0` (every interface, as Cloud Run
/// expects) when it is unset.
pub fn bind_address_from_env(env: &Env) -> Result<IpAddr, ConfigError> {
    env.parse_or(BIND_ADDRESS, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Serves `router` until the process is asked to stop.
///
/// Under AWS Lambda (`AWS_LAMBDA_RUNTIME_API` set) the router handles Lambda events through
/// `lambda_http`. Otherwise it listens on `$BIND_ADDRESS:$PORT` (default `0.0.0.0:8080`) and,
/// on SIGTERM or SIGINT, stops accepting connections and returns once the requests in flight
/// have finished or [`DEFAULT_SHUTDOWN_GRACE`] has passed.
pub async fn serve(router: Router, service_name: &str) -> Result<(), ServeError> {
    install_crypto_provider();
    let env = Env::process();

    if env.optional(AWS_LAMBDA_RUNTIME_API)?.is_some() {
        tracing::info!(
            service = service_name,
            "starting under the AWS Lambda runtime"
        );
        return lambda_http::run(router)
            .await
            .map_err(|err| ServeError::Lambda(err.to_string()));
    }

    let port = port_from_env(&env)?;
    let addr = SocketAddr::new(bind_address_from_env(&env)?, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(service = service_name, %addr, "listening");

    serve_on(listener, router, shutdown_signal()).await?;
    tracing::info!(service = service_name, "stopped");
    Ok(())
}

/// Time limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Maximum time a client may take to send a request's headers, counted from the start of
    /// the connection or the end of the previous response. The connection is closed when it
    /// passes, so it also ends idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Maximum wait for the requests in flight after shutdown starts. Connections still open
    /// then are dropped.
    pub shutdown_grace: Duration,
}

/// Default [`ServeOptions::header_read_timeout`]: 30 s, the default of hyper 1.13 when a timer
/// is set.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServeOptions::shutdown_grace`]: 9 s, because Cloud Run sends SIGKILL 10 s after
/// SIGTERM and the process should exit on its own before that.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` with the default [`ServeOptions`] until `shutdown`
/// completes, then waits for the requests in flight to finish. Tests and the local stack use
/// it with a listener on `127.0.0.1:0`.
pub async fn serve_on<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_on_with(listener, router, shutdown, ServeOptions::default()).await
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` completes.
///
/// Then the server stops accepting connections, closes idle ones, and waits up to
/// `options.shutdown_grace` for the requests in flight before it drops the remaining
/// connections. HTTP/2 is not served: Cloud Run sends HTTP/1.1 to the container unless
/// end-to-end HTTP/2 is enabled on the service.
pub async fn serve_on_with<F>(
    listener: TcpListener,
    router: Router,
    shutdown: F,
    options: ServeOptions,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reaps finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, remote_addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        wait_after_accept_error(&error).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(options.header_read_timeout);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%remote_addr, error = %error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);

    let open = graceful.count();
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections_at_shutdown = open,
            grace_secs = options.shutdown_grace.as_secs_f64(),
            "requests still in flight after the shutdown grace period; dropping their connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Handles a failed `accept`. Errors of one connection are skipped. Others, such as running
/// out of file descriptors, get a one-second pause so the loop does not spin.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %error, "failed to accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Completes on the first SIGTERM (sent by Cloud Run before it stops an instance) or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "failed to listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    #[test]
    fn port_default_and_invalid() {
        assert_eq!(port_from_env(&Env::from_pairs([(PORT, "")])), Ok(8080));
        assert_eq!(port_from_env(&Env::from_pairs([(PORT, "9000")])), Ok(9000));
        let err = port_from_env(&Env::from_pairs([(PORT, "http")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PORT=\"http\" is invalid: expected a value of type u16 (invalid digit found in string)"
        );
    }

    #[test]
    fn bind_address_default_and_invalid() {
        assert_eq!(
            bind_address_from_env(&Env::from_pairs([(BIND_ADDRESS, "")])),
            Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(
            bind_address_from_env(&Env::from_pairs([(BIND_ADDRESS, "127.0.0.1")])),
            Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        let err =
            bind_address_from_env(&Env::from_pairs([(BIND_ADDRESS, "localhost")])).unwrap_err();
        assert_eq!(err.variable(), "BIND_ADDRESS");
    }

    #[test]
    fn install_crypto_provider_twice() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    /// A request that is in flight when shutdown starts still gets its full response.
    #[tokio::test]
    async fn serve_on_finishes_in_flight_request() {
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, router, async {
            let _ = stop_rx.await;
        }));

        let request = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(()).unwrap();

        let response = request.await.unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200 OK"),
            "response: {response}"
        );
        assert!(response.ends_with("done"), "response: {response}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after the in-flight request")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    const SHORT_LIMITS: ServeOptions = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(300),
    };

    /// Starts `router` with [`SHORT_LIMITS`] and returns its address, the sender that starts
    /// shutdown and the server task.
    async fn start_short(
        router: Router,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stop_rx.await;
        };
        let server = tokio::spawn(serve_on_with(listener, router, shutdown, SHORT_LIMITS));
        (addr, stop_tx, server)
    }

    /// A client that sends part of its headers and then nothing is disconnected.
    #[tokio::test]
    async fn serve_on_closes_slow_header_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let router = Router::new().route("/", get(|| async { "ok" }));
        let (addr, _stop_tx, _server) = start_short(router).await;

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("the server closes the connection within 5 s")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&response), "");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed after {:?}",
            started.elapsed()
        );
    }

    /// Shutdown drops a request still running after the grace period.
    #[tokio::test]
    async fn serve_on_drops_requests_after_grace() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let router = Router::new().route("/hang", get(std::future::pending::<&'static str>));
        let (addr, stop_tx, server) = start_short(router).await;

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(()).unwrap();

        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops within 5 s")
            .unwrap()
            .unwrap();
        let mut response = Vec::new();
        // The read ends with end of file or a reset: either way no response was sent.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("the dropped connection is closed");
        assert_eq!(String::from_utf8_lossy(&response), "");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// Shutdown with only idle connections returns at once.
    #[tokio::test]
    async fn serve_on_closes_idle_connections_at_shutdown() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (addr, stop_tx, server) = start_short(router).await;
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let started = std::time::Instant::now();
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops within 5 s")
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "stopped after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn serve_options_defaults() {
        assert_eq!(
            ServeOptions::default(),
            ServeOptions {
                header_read_timeout: Duration::from_secs(30),
                shutdown_grace: Duration::from_secs(9),
            }
        );
    }
}
