//! Serving HTTP with connection timeouts: a connection that does not send a complete request
//! head within the header-read timeout is closed, and so is a kept-alive connection idle that
//! long between requests (hyper's HTTP/1 header-read timer runs whenever it waits for a head).
//! Without it, connections that never send a byte pile up until the process runs out of file
//! descriptors and the host stops answering anyone. WebSockets, once upgraded, are not subject
//! to it. Also raises the soft open-file limit to the hard limit at start.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // Every connection holds a receiver: shutdown is sent on it, and `closed()` says when
    // the last connection has ended.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(%remote, error = %e, "connection ended");
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Open requests get a while to finish; kept-alive idle connections close at once.
    tokio::select! {
        _ = stop_tx.closed() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open 10 s after shutdown began; closing them");
        }
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection, WebSocket and upstream
/// socket is a descriptor; the common soft default of 1024 is few for a room of browsers).
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        tracing::info!(limit = before, "open-file limit already at its maximum");
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::warn!(from = before, to = lim.rlim_max, error = %std::io::Error::last_os_error(),
            "cannot raise the open-file limit");
        return;
    }
    tracing::info!(
        from = before,
        to = lim.rlim_max,
        "raised the open-file limit to the hard limit"
    );
}
