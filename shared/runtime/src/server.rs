//! Serving a router: an HTTP server on `0.0.0.0:$PORT` (or `$BIND_ADDRESS:$PORT`) for Cloud
//! Run, or the AWS Lambda runtime through `lambda_http` when `AWS_LAMBDA_RUNTIME_API` is set.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;

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
/// `lambda_http`. Otherwise it listens on `$BIND_ADDRESS:$PORT` (default `0.0.0.0:8080`) and, on SIGTERM or SIGINT, stops
/// accepting connections and returns once the requests in flight have finished.
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

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// flight to finish. Tests and the local stack use it with a listener on `127.0.0.1:0`.
pub async fn serve_on<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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
}
