//! Hostile connections (DESIGN.md §13): slowloris clients, a connection flood at the cap,
//! and requests queued when the server is told to stop. Raw sockets on loopback
//! against the real binary; SQLite only (no store is involved).
use std::{io::ErrorKind, time::Duration};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout},
};

use crate::helpers::{Store, TestApp, data};

/// How long a test waits for the server to close a socket it should close: a bound on a
/// hung test, not a timing claim.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

fn address(app: &TestApp) -> String {
    app.api.base_url().trim_start_matches("http://").to_owned()
}

async fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"))
}

/// Whether the server has closed `socket` (end of stream, or a reset), waiting at most
/// `wait` for it to happen.
async fn closed_by_server(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let Ok(read) = timeout(wait, async {
        loop {
            match socket.read(&mut buf).await {
                // An answer (a 408, say) before the close: keep reading.
                Ok(n) if n > 0 => continue,
                other => return other,
            }
        }
    })
    .await
    else {
        return false;
    };
    match read {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
    }
}

/// 300 clients open a request and dribble its headers a line every 300 ms (the classic
/// slowloris): ordinary requests are answered meanwhile, and the server closes every one
/// of the 300 once `STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS` (2 s here) has passed since
/// it started waiting for the head — dribbling does not extend it. Without the timeout
/// they stay open for as long as they keep sending.
#[tokio::test(flavor = "multi_thread")]
async fn slowloris_sockets_are_closed_while_ordinary_requests_are_answered() {
    const SOCKETS: usize = 300;
    let env = [("STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS", "2")];
    let app = TestApp::spawn_with(Store::Sqlite, &env).await;
    let address = address(&app);
    let mut dribblers = Vec::new();
    for i in 0..SOCKETS {
        let mut socket = connect(&address).await;
        dribblers.push(tokio::spawn(async move {
            let head = format!("POST /graphql HTTP/1.1\r\nHost: strongroom\r\nX-Client: {i}\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return true;
            }
            // Keep sending header lines until the server gives up on us, for at most
            // CLOSE_WITHIN.
            let started = tokio::time::Instant::now();
            while started.elapsed() < CLOSE_WITHIN {
                sleep(Duration::from_millis(300)).await;
                if socket.write_all(b"X-More: 1\r\n").await.is_err() {
                    return true;
                }
                if closed_by_server(&mut socket, Duration::from_millis(1)).await {
                    return true;
                }
            }
            false
        }));
    }
    // Ordinary clients are served while the 300 hold their sockets.
    for i in 0..20 {
        let response = app.admin("{ __typename }", json!({})).await;
        assert_eq!(data(&response)["__typename"], "Query", "request {i}");
    }
    let mut closed = 0;
    for dribbler in dribblers {
        if dribbler.await.expect("a dribbler") {
            closed += 1;
        }
    }
    assert_eq!(closed, SOCKETS, "slowloris sockets the server closed");
    // And the server is still answering.
    let response = app.admin("{ __typename }", json!({})).await;
    assert_eq!(data(&response)["__typename"], "Query");
}

/// `STRONGROOM_MAX_CONNECTIONS` (20 here): 25 clients connect and send nothing, then an
/// ordinary client connects. The server holds at most 20 connections, so the ordinary
/// one — behind the 25 in the accept queue — is taken, and answered, only once at least
/// 6 of the silent ones were closed (by the 2 s header-read timeout). Without the cap all
/// 26 are taken at once and the answer comes while the silent ones are still open.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_new_connections_wait_for_a_free_slot() {
    const CAP: usize = 20;
    const SILENT: usize = CAP + 5;
    let env = [
        ("STRONGROOM_MAX_CONNECTIONS", "20"),
        ("STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS", "2"),
    ];
    let app = TestApp::spawn_with(Store::Sqlite, &env).await;
    let address = address(&app);
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(connect(&address).await);
    }
    // A client of its own: no pooled connection from earlier requests.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let response = timeout(
        CLOSE_WITHIN,
        client
            .post(format!("http://{address}/graphql"))
            .bearer_auth(&app.admin_token)
            .json(&json!({ "query": "{ __typename }" }))
            .send(),
    )
    .await
    .expect("answered once slots freed")
    .expect("a response");
    assert_eq!(response.status(), 200);
    let mut closed = 0;
    for socket in &mut silent {
        if closed_by_server(socket, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(
        closed > SILENT - CAP,
        "only {closed} of {SILENT} silent connections were closed before the next was taken"
    );
}

/// Requests waiting in the accept queue when SIGTERM arrives: the server is paused
/// (SIGSTOP) while 30 clients connect and send their requests — the kernel completes the
/// connections, nobody accepts them — then gets SIGTERM and SIGCONT. Every request is
/// answered and its connection closed, none reset, and the server exits 0. (Closing the
/// listener without taking what is queued resets those connections.)
#[tokio::test(flavor = "multi_thread")]
async fn requests_queued_at_sigterm_are_answered_not_reset() {
    const CLIENTS: usize = 30;
    let env = [("STRONGROOM_SHUTDOWN_GRACE_SECS", "10")];
    let mut app = TestApp::spawn_with(Store::Sqlite, &env).await;
    let address = address(&app);
    let body = json!({ "query": "{ __typename }" }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: strongroom\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.admin_token,
        body.len()
    );
    app.signal_server("STOP");
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        let mut socket = connect(&address).await;
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send a request");
        sockets.push(socket);
    }
    app.signal_server("TERM");
    app.signal_server("CONT");
    let status = app.terminate_and_restart(CLOSE_WITHIN, &[] as &[(&str, &str)]);
    assert!(
        status.is_some_and(|status| status.success()),
        "exit status after SIGTERM: {status:?}\n{}",
        app.logs()
    );
    for (i, socket) in sockets.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let read = timeout(CLOSE_WITHIN, socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            matches!(read, Ok(Ok(_))),
            "client {i}: {read:?} after {answer:?}"
        );
        assert!(
            answer.starts_with("HTTP/1.1 200 OK"),
            "client {i} got {answer:?}"
        );
        assert!(answer.contains("\"__typename\":\"Query\""), "{answer}");
    }
}
