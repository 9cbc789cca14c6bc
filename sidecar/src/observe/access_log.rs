//! The access-log writer: one JSON line per request, off the request path.
//!
//! Requests hand a `LogRecord` to a bounded channel with `try_send`; a
//! dedicated thread wakes every few milliseconds, formats the queued lines
//! into one batch and writes it. When the writer falls behind, records are
//! dropped and counted, never waited for: a slow disk must not slow
//! payments. A record that cannot be written (a full disk) is counted as
//! dropped too, so lines written + `paymesh_access_log_dropped_total` is
//! every request.
//!
//! A file log rotates by size (`access_log.rotate`, see `rotate.rs`) between
//! whole lines, and reopens its path on request (SIGUSR1, for an external
//! logrotate); both happen in the writer thread, so no line is torn.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method};
use prometheus::IntCounter;
use serde::Serialize;

use super::rotate::{Rotate, shift};
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
    /// The sidecar's span, or the caller's (see `layers::trace`).
    pub trace: Option<paymesh_otel::TraceContext>,
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
    trace_id: Option<String>,
    span_id: Option<String>,
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
            trace_id: self.trace.map(|t| t.trace_hex()),
            span_id: self.trace.map(|t| t.span_hex()),
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
    /// A line formatted elsewhere (a shadow-read mismatch record), without
    /// its newline.
    Raw(Vec<u8>),
    /// Write everything queued so far, then acknowledge.
    Sync(mpsc::Sender<()>),
}

/// The request side of the writer: cheap to call, never blocks.
#[derive(Debug)]
pub struct AccessLogWriter {
    tx: SyncSender<Msg>,
    dropped: IntCounter,
    /// Set by `reopen`; the writer thread reopens the path at its next wake.
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl AccessLogWriter {
    /// Opens the sink (`None` = stdout; `rotate` applies to a file only)
    /// and starts the writer thread.
    pub fn start(path: Option<&Path>, rotate: Rotate, buffer_lines: usize, dropped: IntCounter) -> io::Result<Self> {
        let out = match path {
            None => Out::Stdout(io::stdout()),
            Some(p) => {
                let file = open_append(p)?;
                let meta = file.metadata()?;
                // A device or a pipe (`/dev/null`, `/dev/stdout`) never rotates.
                let rotate = if meta.is_file() { rotate } else { Rotate { max_bytes: u64::MAX, ..rotate } };
                Out::File { path: p.to_owned(), file, size: meta.len(), rotate }
            }
        };
        let (tx, rx) = mpsc::sync_channel(buffer_lines);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            out,
            batch: Vec::with_capacity(BATCH_BYTES),
            batch_lines: 0,
            line: Vec::with_capacity(512),
            dropped: dropped.clone(),
            failed: false,
        };
        let flag = reopen.clone();
        thread::Builder::new().name("access-log".into()).spawn(move || write_loop(rx, writer, flag, buffer_lines))?;
        Ok(Self { tx, dropped, reopen })
    }

    /// Queues a record, or counts it as dropped if the queue is full.
    pub fn send(&self, record: LogRecord) {
        match self.tx.try_send(Msg::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Queues a line formatted by the caller (one JSON object, no newline),
    /// or counts it as dropped if the queue is full.
    pub fn send_raw(&self, line: Vec<u8>) {
        if self.tx.try_send(Msg::Raw(line)).is_err() {
            self.dropped.inc();
        }
    }

    /// Asks the writer to close the file and open its path again (after an
    /// external logrotate moved it). Never blocks; a no-op for stdout.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Waits (up to `timeout`) until every record queued before this call is
    /// written; used on shutdown.
    pub fn sync(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::channel();
        // A blocking send is fine here: shutdown is not a request path.
        if self.tx.send(Msg::Sync(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Bytes formatted before one `write` call.
const BATCH_BYTES: usize = 64 * 1024;

enum Out {
    Stdout(io::Stdout),
    File {
        path: PathBuf,
        file: File,
        /// Bytes in the live file, as far as this writer knows.
        size: u64,
        rotate: Rotate,
    },
}

/// The writer thread's state: the sink and the batch being formatted.
struct Writer {
    out: Out,
    batch: Vec<u8>,
    batch_lines: u64,
    line: Vec<u8>,
    dropped: IntCounter,
    /// In an episode of failed writes (logged once, at its start).
    failed: bool,
}

impl Writer {
    fn push(&mut self, record: &LogRecord) {
        self.line.clear();
        if record.write_json(&mut self.line).is_err() {
            self.dropped.inc();
            return;
        }
        self.append_line();
    }

    fn push_raw(&mut self, line: &[u8]) {
        self.line.clear();
        self.line.extend_from_slice(line);
        self.line.push(b'\n');
        self.append_line();
    }

    /// Adds the formatted `line` to the batch, rotating first if it would
    /// not fit.
    fn append_line(&mut self) {
        if let Out::File { size, rotate, .. } = &self.out {
            if rotate.due(*size + self.batch.len() as u64, self.line.len() as u64) {
                self.write_batch();
                self.rotate();
            }
        }
        self.batch.extend_from_slice(&self.line);
        self.batch_lines += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.write_batch();
        }
    }

    /// Writes the batch in one call; lines that could not be written are
    /// counted as dropped.
    fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let result = match &mut self.out {
            Out::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(&self.batch).and_then(|()| lock.flush())
            }
            Out::File { file, size, .. } => {
                let r = file.write_all(&self.batch);
                if r.is_ok() {
                    *size += self.batch.len() as u64;
                }
                r
            }
        };
        match result {
            Ok(()) => self.failed = false,
            Err(e) => {
                self.dropped.inc_by(self.batch_lines);
                if !self.failed {
                    tracing::error!(error = %e, "access log write failed; the lines are counted as dropped");
                    self.failed = true;
                }
            }
        }
        self.batch.clear();
        self.batch_lines = 0;
    }

    /// `FILE` → `FILE.1` …, then a fresh `FILE`. If the fresh file cannot
    /// be opened, writing goes on into the old handle: nothing is lost.
    fn rotate(&mut self) {
        let Out::File { path, file, size, rotate } = &mut self.out else { return };
        if let Err(e) = shift(path, rotate.keep) {
            tracing::error!(error = %e, path = %path.display(), "cannot rotate the access log; it keeps growing");
            *size = 0; // Try again after another max_bytes, not on every line.
            return;
        }
        match open_append(path) {
            Ok(f) => {
                *file = f;
                *size = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot open a new access log; writing on into the rotated one");
                *size = 0;
            }
        }
    }

    fn reopen(&mut self) {
        self.write_batch();
        let Out::File { path, file, size, .. } = &mut self.out else { return };
        match open_append(path).and_then(|f| f.metadata().map(|m| (f, m.len()))) {
            Ok((f, len)) => {
                *file = f;
                *size = len;
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot reopen the access log; writing on into the old file")
            }
        }
    }
}

/// How long the writer sleeps when it found the queue nearly empty.
const IDLE_PAUSE: Duration = Duration::from_millis(10);

/// The writer polls instead of blocking in `recv`: a blocked receiver makes
/// every `try_send` wake it with a futex call, a syscall per request. A
/// sleeping one costs the request path nothing; the queue is sized for the
/// pause (4096 lines per 10 ms is 400 000 lines per second).
fn write_loop(rx: Receiver<Msg>, mut w: Writer, reopen: Arc<AtomicBool>, capacity: usize) {
    loop {
        if reopen.swap(false, Ordering::AcqRel) {
            w.reopen();
        }
        let mut drained = 0usize;
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(r)) => {
                    drained += 1;
                    w.push(&r);
                }
                Ok(Msg::Raw(line)) => {
                    drained += 1;
                    w.push_raw(&line);
                }
                Ok(Msg::Sync(ack)) => {
                    w.write_batch();
                    let _ = ack.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    w.write_batch();
                    return;
                }
            }
        }
        w.write_batch();
        // Keep going without a pause while the queue fills fast.
        if drained < capacity.div_ceil(2) {
            thread::sleep(IDLE_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::rotate::kept_files;

    const NO_ROTATE: Rotate = Rotate { max_bytes: u64::MAX, keep: 1 };

    fn record() -> LogRecord {
        LogRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456),
            request_id: HeaderValue::from_static("req-\"1\""),
            client: None,
            method: Method::POST,
            feature: Feature::Charge,
            route: Route::Orchestration,
            status: 201,
            trace: paymesh_otel::TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
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
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["duration_us"], 850);
        assert_eq!(v["bytes_in"], 57);
        assert_eq!(v["bytes_out"], 300);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let w = AccessLogWriter::start(Some(&path), NO_ROTATE, 1, dropped.clone()).unwrap();
        for _ in 0..10_000 {
            w.send(record());
        }
        assert!(w.sync(Duration::from_secs(10)));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(lines + dropped.get(), 10_000);
        assert!(lines >= 1);
    }

    #[test]
    fn rotates_between_whole_lines_and_keeps_the_newest_files() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotate = Rotate { max_bytes: 4096, keep: 3 };
        let w = AccessLogWriter::start(Some(&path), rotate, 100_000, dropped.clone()).unwrap();
        for _ in 0..1000 {
            w.send(record());
        }
        assert!(w.sync(Duration::from_secs(10)));
        let files = kept_files(&path, 10);
        assert_eq!(files.len(), 4, "{files:?}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.len() as u64 <= rotate.max_bytes, "{f:?} is {} bytes", text.len());
            assert!(text.ends_with('\n'));
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn reopen_starts_a_new_file_at_the_path() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let w = AccessLogWriter::start(Some(&path), NO_ROTATE, 1000, dropped).unwrap();
        w.send(record());
        assert!(w.sync(Duration::from_secs(5)));
        let moved = dir.path().join("access.log.old");
        std::fs::rename(&path, &moved).unwrap();
        w.reopen();
        // The writer reopens at its next wake: the path exists again once
        // it has (however busy the machine is).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "the writer never reopened the path");
            std::thread::sleep(IDLE_PAUSE);
        }
        w.send(record());
        w.send(record());
        assert!(w.sync(Duration::from_secs(5)));
        assert_eq!(std::fs::read_to_string(&moved).unwrap().lines().count(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }
}
