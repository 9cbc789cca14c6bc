//! The accept loop and the drain over real sockets on 127.0.0.1.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";

/// A server whose handler announces each request on `entered` and answers
/// once `release` is notified.
fn start(drain: Duration) -> (SocketAddr, oneshot::Sender<()>, Arc<Notify>, Arc<Notify>, tokio::task::JoinHandle<()>) {
    let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handle = {
        let (entered, release) = (entered.clone(), release.clone());
        move |_req: Request<Incoming>| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                Response::new(Full::new(Bytes::from_static(b"done")))
            }
        }
    };
    let http = auto::Builder::new(TokioExecutor::new());
    let server = tokio::spawn(serve_http(
        listener,
        http,
        handle,
        async {
            let _ = stopped.await;
        },
        drain,
        plain,
    ));
    (addr, stop, entered, release, server)
}

#[tokio::test]
async fn the_drain_lets_a_request_in_flight_finish_then_closes() {
    let (addr, stop, entered, release, server) = start(Duration::from_secs(10));
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    entered.notified().await;

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.is_finished(), "the drain must wait for the request in flight");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener must be closed once the drain begins");

    release.notify_one();
    let mut answer = String::new();
    // read_to_string ends only when the server closes the connection,
    // which graceful shutdown does after this response.
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_drain_deadline_bounds_a_request_that_never_ends() {
    let (addr, stop, entered, _release, server) = start(Duration::from_millis(200));
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    entered.notified().await;

    let stopped_at = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    let took = stopped_at.elapsed();
    assert!(took >= Duration::from_millis(200), "returned before the deadline: {took:?}");
}

#[tokio::test]
async fn a_request_sent_just_after_the_drain_begins_is_answered() {
    let (addr, stop, entered, release, server) = start(Duration::from_secs(10));
    let mut client = TcpStream::connect(addr).await.unwrap();
    // Accepted with nothing sent yet: the drain finds the connection idle,
    // as it finds one whose request is still on the wire.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.write_all(REQUEST).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), entered.notified()).await.expect("the request was not served");
    release.notify_one();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_drain_closes_a_connection_still_idle_after_the_grace() {
    let (addr, stop, _entered, _release, server) = start(Duration::from_secs(30));
    let mut client = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped_at = Instant::now();
    stop.send(()).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty(), "an idle connection is closed without an answer");
    assert!(stopped_at.elapsed() >= IDLE_GRACE, "closed before the grace: {:?}", stopped_at.elapsed());
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_server_stops_at_once() {
    let (_addr, stop, _entered, _release, server) = start(Duration::from_secs(30));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_waits_for_every_watch_and_tells_late_ones_at_once() {
    let drain = Drain::new();
    let mut early = drain.watch();
    drain.begin();
    tokio::time::timeout(Duration::from_secs(1), early.begun()).await.unwrap();
    let mut late = drain.watch();
    tokio::time::timeout(Duration::from_secs(1), late.begun()).await.unwrap();

    let waiting = tokio::spawn(drain.wait(Duration::from_secs(10)));
    drop(early);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "one watch is still held");
    drop(late);
    assert!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap());
    assert!(Drain::new().wait(Duration::from_secs(10)).await, "nothing to wait for: drained at once");
}

#[tokio::test]
async fn accept_backlog_takes_the_queued_connections_without_waiting() {
    let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let _clients = [TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
    // The kernel completes both handshakes without our accepting them; give
    // tokio's reactor a moment to see the listener readable.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accept_backlog(&listener).len(), 2);
    assert!(accept_backlog(&listener).is_empty());
}

#[tokio::test]
async fn serves_http_on_a_unix_socket_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let listener = crate::bind_unix(&path).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = |_req: Request<Incoming>| async { Response::new(Full::new(Bytes::from_static(b"over unix"))) };
    let server = tokio::spawn(serve_http_unix(
        listener,
        auto::Builder::new(TokioExecutor::new()),
        handle,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("over unix"), "{answer}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}
