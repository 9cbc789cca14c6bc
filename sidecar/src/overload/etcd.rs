//! Copies switch records to etcd, in the background, until each is there.
//!
//! Each record becomes `<prefix>/switch-events/<pod>/<time>` under a lease
//! that ends seven days after the switch, however late the copy lands. The
//! queue is bounded; while etcd is down the writer retries the record at
//! its head with jittered, capped backoff and everything behind it waits.
//! It uses the sidecar's one etcd connection (`crate::etcd`) and reads
//! where etcd is and the prefix from the live config for every record. At
//! start the writer also replays this pod's records of the last seven days
//! from the events file (a put of the same key and value is harmless), so
//! records queued when the process stopped reach etcd after all. Nothing
//! here ever blocks a switch or a request.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use etcd_client::PutOptions;
use tokio::sync::{mpsc, watch};

use super::events::SwitchEvent;
use super::telemetry::unix_ms;
use crate::etcd::{Backoff, ErrorKind, Etcd, timed};

/// How long a record stays in etcd.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Records waiting for etcd at most; past it a record stays in the file.
pub const QUEUE_LEN: usize = 1024;
/// The end of the events file read back at start: thousands of records.
const REPLAY_BYTES: u64 = 4 << 20;
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The longest a lease grant or a put may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending half, kept in the shared state.
#[derive(Debug)]
pub struct EtcdQueue {
    tx: mpsc::Sender<SwitchEvent>,
    /// Records not yet in etcd (queued, replayed or being retried).
    pub pending: Arc<AtomicUsize>,
}

/// The receiving half, handed to [`run`] once.
#[derive(Debug)]
pub struct EtcdBacklog {
    rx: mpsc::Receiver<SwitchEvent>,
    pending: Arc<AtomicUsize>,
}

pub fn queue() -> (EtcdQueue, EtcdBacklog) {
    let (tx, rx) = mpsc::channel(QUEUE_LEN);
    let pending = Arc::new(AtomicUsize::new(0));
    (EtcdQueue { tx, pending: pending.clone() }, EtcdBacklog { rx, pending })
}

impl EtcdQueue {
    /// Queues a record for etcd; never waits.
    pub fn push(&self, event: SwitchEvent) {
        // Counted before it is sent, so the writer never subtracts first.
        self.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(event) {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "the etcd queue of switch records is full; this record is in the events file only");
        }
    }
}

/// Where the events file and its kept rotations are, read at start for
/// the replay.
#[derive(Debug, Clone)]
pub struct Replay {
    pub events_file: PathBuf,
    pub keep: u32,
}

/// The writer task: replays the file's recent records, then copies each
/// new one, retrying until etcd has it or shutdown.
pub async fn run(
    etcd: Etcd,
    files: Replay,
    pod: String,
    mut backlog: EtcdBacklog,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut replay = VecDeque::from(replay(&etcd, files, &pod).await);
    backlog.pending.fetch_add(replay.len(), Ordering::Relaxed);
    let mut failing = false;
    loop {
        let event = match replay.pop_front() {
            Some(e) => e,
            None => tokio::select! {
                _ = crate::server::stopped(&mut shutdown) => return,
                e = backlog.rx.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
            },
        };
        let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX);
        loop {
            if !etcd.configured() {
                break; // etcd is not configured (any more): the file is all there is.
            }
            match put(&etcd, &event).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("etcd takes switch records again");
                        failing = false;
                    }
                    break;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot copy a switch record to etcd; retrying in the background");
                        failing = true;
                    }
                    if !backoff.wait(&mut shutdown).await {
                        return;
                    }
                }
            }
        }
        backlog.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Puts one record under its own lease; a failure is recorded with the
/// connection.
async fn put(etcd: &Etcd, event: &SwitchEvent) -> Result<(), String> {
    let ttl = remaining_ttl(event, SystemTime::now());
    if ttl.is_zero() {
        return Ok(()); // Would expire at once: nothing to keep.
    }
    let conn = etcd.connect().await?;
    let prefix = etcd.config().prefix;
    let key = format!("{}/switch-events/{}", prefix.trim_end_matches('/'), event.key_suffix());
    let mut client = conn.client.clone();
    let put = async {
        let lease = timed("lease grant", CALL_TIMEOUT, client.lease_grant(ttl.as_secs().max(1) as i64, None)).await?;
        let options = Some(PutOptions::new().with_lease(lease.id()));
        timed("put", CALL_TIMEOUT, client.put(key, event.to_line(), options)).await
    };
    match put.await {
        Ok(_) => {
            etcd.ok();
            Ok(())
        }
        Err(e) => Err(etcd.failed(Some(&conn), ErrorKind::Watch, &e)),
    }
}

/// What is left of a record's seven days at `now`.
fn remaining_ttl(event: &SwitchEvent, now: SystemTime) -> Duration {
    let age = Duration::from_millis(unix_ms(now).saturating_sub(event.time_ms));
    RECORD_TTL.saturating_sub(age)
}

/// This pod's records of the last seven days in the events file and its
/// kept rotations.
async fn replay(etcd: &Etcd, files: Replay, pod: &str) -> Vec<SwitchEvent> {
    if !etcd.configured() {
        return Vec::new();
    }
    let Replay { events_file: path, keep } = files;
    let pod = pod.to_owned();
    tokio::task::spawn_blocking(move || recent_records(&path, keep, &pod, SystemTime::now())).await.unwrap_or_default()
}

fn recent_records(path: &Path, keep: u32, pod: &str, now: SystemTime) -> Vec<SwitchEvent> {
    // Newest file first until the budget is spent, then in time order.
    let mut budget = REPLAY_BYTES;
    let mut texts = Vec::new();
    for file in crate::observe::rotate::kept_files(path, keep).iter().rev() {
        if budget == 0 {
            break;
        }
        let Ok((text, read)) = tail(file, budget) else { continue };
        budget -= read;
        texts.push(text);
    }
    texts
        .iter()
        .rev()
        .flat_map(|t| t.lines())
        .filter_map(|l| serde_json::from_str::<SwitchEvent>(l).ok())
        .filter(|e| e.pod == pod && !remaining_ttl(e, now).is_zero())
        .collect()
}

/// The last `max` bytes of a file and how many that was (a file may be
/// large: rotation may be set high); a line cut at the start fails to parse
/// and is skipped.
fn tail(path: &Path, max: u64) -> std::io::Result<(String, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pod: &str, time_ms: u64) -> SwitchEvent {
        let mut e: SwitchEvent = serde_json::from_str(
            r#"{"time":"t","time_ms":0,"pod":"p","component":"access_log","state":"off","reason":"overload",
                "control":"board","readings":null,
                "thresholds":{"shed":{"cpu_percent":85,"mem_percent":90},
                              "restore":{"cpu_percent":60,"mem_percent":75},"hold_ms":10000}}"#,
        )
        .unwrap();
        e.pod = pod.to_owned();
        e.time_ms = time_ms;
        e
    }

    #[test]
    fn a_record_lives_seven_days_from_its_switch() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(30 * 24 * 3600);
        let now_ms = unix_ms(now);
        assert_eq!(remaining_ttl(&event("p", now_ms), now), RECORD_TTL);
        assert_eq!(remaining_ttl(&event("p", now_ms - 3_600_000), now), RECORD_TTL - Duration::from_secs(3600));
        assert!(remaining_ttl(&event("p", now_ms - 8 * 24 * 3_600_000), now).is_zero());
    }

    #[test]
    fn replays_this_pods_recent_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(30 * 24 * 3600);
        let now_ms = unix_ms(now);
        let lines = [
            event("p", now_ms - 1000).to_line(),
            event("other", now_ms - 1000).to_line(),
            event("p", now_ms - 8 * 24 * 3_600_000).to_line(),
            "not json".to_owned(),
            event("p", now_ms).to_line(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let got = recent_records(&path, 5, "p", now);
        assert_eq!(got.iter().map(|e| e.time_ms).collect::<Vec<_>>(), vec![now_ms - 1000, now_ms]);
        assert!(recent_records(&dir.path().join("missing"), 5, "p", now).is_empty());
    }

    #[test]
    fn replays_the_kept_rotations_oldest_first() {
        use crate::observe::rotate::numbered;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(30 * 24 * 3600);
        let now_ms = unix_ms(now);
        let write = |p: &Path, t: u64| std::fs::write(p, event("p", now_ms - t).to_line() + "\n").unwrap();
        write(&numbered(&path, 3), 4000); // beyond keep = 2: no longer one of this pod's files
        write(&numbered(&path, 2), 3000);
        write(&numbered(&path, 1), 2000);
        write(&path, 1000);
        let got = recent_records(&path, 2, "p", now);
        assert_eq!(got.iter().map(|e| now_ms - e.time_ms).collect::<Vec<_>>(), vec![3000, 2000, 1000]);
    }
}
