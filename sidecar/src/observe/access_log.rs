//! The access-log writer: one JSON line per request, off the request path.
//!
//! Requests hand a `LogRecord` to a bounded channel with `try_send`; a
//! dedicated thread wakes every few milliseconds, formats and writes the
//! queued lines, and flushes once per batch. When the writer falls
//! behind, records are dropped and counted, never waited for: a slow disk
//! must not slow payments.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method};
use prometheus::IntCounter;
use serde::Serialize;

use crate::migration::{Feature, Route};
use crate::state::ClientEntry;

/// What one access-log line says, before formatting.
#[derive(Debug)]
pub struct LogRecord {
    pub time: SystemTime,
    pub request_id: HeaderValue,
    pub client: Option<Arc<ClientEntry>>,
    pub method: Method,
    pub feature: Feature,
    pub route: Route,
    pub status: u16,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client: Option<&'a str>,
    method: &'a str,
    feature: &'static str,
    route: &'static str,
    status: u16,
    duration_us: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl LogRecord {
    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let line = Line {
            time: humantime::format_rfc3339_micros(self.time).to_string(),
            request_id: self.request_id.to_str().unwrap_or(""),
            client: self.client.as_ref().map(|c| c.id.as_ref()),
            method: self.method.as_str(),
            feature: self.feature.as_str(),
            route: self.route.as_str(),
            status: self.status,
            duration_us: self.duration_us,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    }
}

enum Msg {
    Line(LogRecord),
    /// Flush everything queued so far, then acknowledge.
    Sync(mpsc::Sender<()>),
}

/// The request side of the writer: cheap to call, never blocks.
#[derive(Debug)]
pub struct AccessLogWriter {
    tx: SyncSender<Msg>,
    dropped: IntCounter,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl AccessLogWriter {
    /// Opens the sink (`None` = stdout) and starts the writer thread.
    pub fn start(path: Option<&Path>, buffer_lines: usize, dropped: IntCounter) -> io::Result<Self> {
        let sink: Box<dyn Write + Send> = match path {
            None => Box::new(io::stdout()),
            Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        };
        let (tx, rx) = mpsc::sync_channel(buffer_lines);
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, BufWriter::with_capacity(64 * 1024, sink), buffer_lines))?;
        Ok(Self { tx, dropped })
    }

    /// Queues a record, or counts it as dropped if the queue is full.
    pub fn send(&self, record: LogRecord) {
        match self.tx.try_send(Msg::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Waits (up to `timeout`) until every record queued before this call is
    /// written and flushed; used on shutdown.
    pub fn sync(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::channel();
        // A blocking send is fine here: shutdown is not a request path.
        if self.tx.send(Msg::Sync(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }
}

/// How long the writer sleeps when it found the queue nearly empty.
const IDLE_PAUSE: Duration = Duration::from_millis(10);

/// The writer polls instead of blocking in `recv`: a blocked receiver makes
/// every `try_send` wake it with a futex call, a syscall per request. A
/// sleeping one costs the request path nothing; the queue is sized for the
/// pause (4096 lines per 10 ms is 400 000 lines per second).
fn write_loop(rx: Receiver<Msg>, mut out: BufWriter<Box<dyn Write + Send>>, capacity: usize) {
    let mut failed = false;
    loop {
        let mut drained = 0usize;
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(r)) => {
                    drained += 1;
                    if let Err(e) = r.write_json(&mut out) {
                        if !failed {
                            tracing::error!(error = %e, "access log write failed");
                            failed = true;
                        }
                    }
                }
                Ok(Msg::Sync(ack)) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if drained > 0 && out.flush().is_ok() {
            failed = false;
        }
        // Keep going without a pause while the queue fills fast.
        if drained < capacity.div_ceil(2) {
            thread::sleep(IDLE_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord {
        LogRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456),
            request_id: HeaderValue::from_static("req-\"1\""),
            client: None,
            method: Method::POST,
            feature: Feature::Charge,
            route: Route::Orchestration,
            status: 201,
            duration_us: 850,
            bytes_in: 57,
            bytes_out: 300,
        }
    }

    #[test]
    fn a_line_is_json_with_every_field() {
        let mut buf = Vec::new();
        record().write_json(&mut buf).unwrap();
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["time"], "2025-11-24T16:00:00.123456Z");
        assert_eq!(v["request_id"], "req-\"1\"");
        assert!(v["client"].is_null());
        assert_eq!(v["method"], "POST");
        assert_eq!(v["feature"], "charge");
        assert_eq!(v["route"], "orchestration");
        assert_eq!(v["status"], 201);
        assert_eq!(v["duration_us"], 850);
        assert_eq!(v["bytes_in"], 57);
        assert_eq!(v["bytes_out"], 300);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let w = AccessLogWriter::start(Some(&path), 1, dropped.clone()).unwrap();
        for _ in 0..10_000 {
            w.send(record());
        }
        assert!(w.sync(Duration::from_secs(10)));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(lines + dropped.get(), 10_000);
        assert!(lines >= 1);
    }
}
