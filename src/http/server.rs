//! The HTTP server loop: hyper's HTTP/1.1 connections (with WebSocket upgrades) around the
//! axum router, with the bounds a server facing hostile clients needs (DESIGN §13):
//!
//! - **HTTP/1.1 only.** Cleartext HTTP/2 (prior knowledge) is not spoken: hyper has no
//!   header-read timeout for it, and detecting it means waiting for a silent client's first
//!   bytes without one. HTTP/2 belongs to the TLS-terminating proxy in front.
//! - **A connection cap** (`STRONGROOM_MAX_CONNECTIONS`): at the cap the server stops
//!   accepting, so further connections wait in the kernel's backlog instead of costing a
//!   task and a file each; a slot frees when a connection (or an upgraded WebSocket) closes.
//! - **A header-read timeout** (`STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS`), hyper's own:
//!   a connection must deliver a complete request head within it, counted from when the
//!   server starts waiting for one. That bounds both a slowloris client (headers dribbled a
//!   byte at a time) and an idle keep-alive connection waiting for its next request. A body
//!   that never comes is the request timeout's (`STRONGROOM_REQUEST_TIMEOUT_SECS`).
//! - **Graceful shutdown without resets**: when told to stop, the server first takes every
//!   connection already waiting in the kernel's backlog (closing the listener would reset
//!   them, requests and all), then stops listening. A connection idle between requests
//!   closes at once; one that has not sent its first request gets [`FIRST_REQUEST_GRACE`]
//!   to start it; what is under way is answered with `Connection: close`. The caller
//!   bounds the whole wait (`STRONGROOM_SHUTDOWN_GRACE_SECS`).
//!
//! Each request carries the peer's address as axum's `ConnectInfo<SocketAddr>`.
use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, header::CONNECTION},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt;

/// How long a connection that has not sent its first request when the server stops may
/// take to send it (one already queued arrives at once).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How long to wait before accepting again after `accept` failed (out of files, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The bounds of the server loop.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then until every connection
/// has closed (the caller puts a deadline on that).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    open_connections: Gauge,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a clone; when all are gone, every connection has closed.
    let (done, all_done) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let connection = |stream: TcpStream, peer: SocketAddr, slot: OwnedSemaphorePermit| {
        let io = Counted::new(stream, slot, open_connections.clone());
        tokio::spawn(serve_connection(
            io,
            peer,
            router.clone(),
            limits.header_read_timeout,
            stopping.clone(),
            all_done.clone(),
        ));
    };
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => {
                if let Some((stream, peer, slot)) = accepted {
                    connection(stream, peer, slot);
                }
            }
        }
    }
    let _ = stop.send(true);
    // Connections the kernel completed but nobody accepted yet would be reset when the
    // listener closes, with their requests perhaps already sent: take them first (while
    // there are slots), to be answered and closed.
    // (tokio's accept answers from readiness it has been told about; ask the kernel.)
    match listener.into_std() {
        Ok(listener) => {
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                let Ok((stream, peer)) = listener.accept() else {
                    break;
                };
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => connection(stream, peer, slot),
                    Err(e) => tracing::warn!(error = %e, "could not take a queued connection"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not take the queued connections"),
    }
    drop(all_done);
    done.closed().await;
}

/// The next connection, once there is a slot for it; `None` after a failed accept.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    // The semaphore is never closed.
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(e) => {
            // Out of file descriptors, or a connection reset before it was accepted.
            tracing::warn!(error = %e, "could not accept a connection");
            tokio::time::sleep(ACCEPT_RETRY).await;
            None
        }
    }
}

async fn serve_connection(
    io: Counted,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
) {
    let first_request = Arc::new(Notify::new());
    let served = Arc::new(AtomicBool::new(false));
    let service = {
        let (first_request, served, stopping) =
            (first_request.clone(), served.clone(), stopping.clone());
        tower::service_fn(move |mut request: Request<Incoming>| {
            if !served.swap(true, Ordering::AcqRel) {
                first_request.notify_one();
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            let closing = *stopping.borrow();
            let answer = router.clone().oneshot(request.map(Body::new));
            async move {
                let mut response = answer.await?;
                // Once the server is stopping, answers close their connection.
                if closing {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let hyper_service = TowerToHyperService::new(service);
    let mut conn = pin!(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(io), hyper_service)
            .with_upgrades()
    );
    // hyper's graceful shutdown closes a connection at once unless a request is under
    // way, unread bytes and all: one that has not sent its first request yet gets
    // FIRST_REQUEST_GRACE to start it (and is then answered and closed).
    let stopped = async {
        if stopping.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
        if !served.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first_request.notified()).await;
        }
    };
    let mut stopped = pin!(stopped);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut stopped, if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's socket, holding its slot under the cap and counted in
/// `strongroom_http_connections` for as long as it is open — through a WebSocket upgrade
/// too, since the upgraded connection keeps the socket.
struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    open: Gauge,
}

impl Counted {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        Self {
            stream,
            _slot: slot,
            open,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
