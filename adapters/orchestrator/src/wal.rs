//! An fsync'd write-ahead log with group commit.
//!
//! Each append is one line, `<crc32 hex> <json>\n`, written and
//! `fdatasync`ed before the caller is told it is durable. A single writer
//! thread drains every append queued while the previous fsync ran and
//! commits them with one fsync, so throughput grows with concurrency instead
//! of being capped at one payment per disk flush.
//!
//! On open, a torn last line (a crash mid-write) is cut off: it was never
//! acknowledged. A bad line in the middle is corruption and stops the start.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

type Ack = oneshot::Sender<Result<(), String>>;

/// Handle to the log's writer thread. Appends are durable once acknowledged.
#[derive(Debug, Clone)]
pub struct Wal {
    tx: mpsc::Sender<(Vec<u8>, Ack)>,
}

impl Wal {
    /// Reads every good line of `path` (creating it if absent), cuts a bad
    /// tail, and returns the payloads with a writer positioned at the end.
    pub fn open(path: &Path) -> io::Result<(Wal, Vec<Vec<u8>>)> {
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let mut lines = Vec::new();
        let mut good_len = 0u64;
        let mut reader = BufReader::new(&mut file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            match decode_line(&buf) {
                Some(payload) => {
                    lines.push(payload.to_vec());
                    good_len += n as u64;
                }
                None => {
                    // A torn tail is the last line; a bad line with records
                    // after it is corruption, and cutting there would drop
                    // acknowledged payments: refuse instead.
                    let mut rest = Vec::new();
                    std::io::Read::read_to_end(&mut reader, &mut rest)?;
                    if !rest.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{}: corrupt record at byte {good_len} with data after it; refusing to start",
                                path.display()
                            ),
                        ));
                    }
                    tracing::warn!(path = %path.display(), offset = good_len, "cutting a torn log tail");
                    break;
                }
            }
        }
        drop(reader);
        if file.metadata()?.len() != good_len {
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((Wal::spawn(file)?, lines))
    }

    /// Replaces the log at `path` with `payloads` (compaction): written to a
    /// temporary file, fsync'd, renamed over, directory fsync'd.
    pub fn rewrite(path: &Path, payloads: impl IntoIterator<Item = Vec<u8>>) -> io::Result<()> {
        let tmp = path.with_extension("compact");
        {
            let mut out = io::BufWriter::new(File::create(&tmp)?);
            for p in payloads {
                out.write_all(&encode_line(&p))?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    }

    /// Queues one record; the returned receiver resolves once it is on disk.
    /// Call this while holding the lock that ordered the change, await after.
    pub fn enqueue(&self, payload: Vec<u8>) -> oneshot::Receiver<Result<(), String>> {
        let (ack, done) = oneshot::channel();
        if let Err(mpsc::SendError((_, ack))) = self.tx.send((payload, ack)) {
            let _ = ack.send(Err("log writer stopped".to_owned()));
        }
        done
    }

    fn spawn(mut file: File) -> io::Result<Wal> {
        let (tx, rx) = mpsc::channel::<(Vec<u8>, Ack)>();
        std::thread::Builder::new().name("wal-writer".into()).spawn(move || {
            let mut acks = Vec::new();
            let mut batch = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                while let Some((payload, ack)) = next {
                    batch.extend_from_slice(&encode_line(&payload));
                    acks.push(ack);
                    next = rx.try_recv().ok();
                }
                let result = file.write_all(&batch).and_then(|()| file.sync_data()).map_err(|e| e.to_string());
                if let Err(e) = &result {
                    // Nothing in this batch is acknowledged; later appends may
                    // still succeed once the disk recovers.
                    tracing::error!(error = %e, "write-ahead log append failed");
                }
                for ack in acks.drain(..) {
                    let _ = ack.send(result.clone());
                }
                batch.clear();
            }
        })?;
        Ok(Wal { tx })
    }
}

fn encode_line(payload: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(payload.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32(payload)).as_bytes());
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

fn decode_line(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n")?;
    if line.len() < 9 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let payload = &line[9..];
    (crc32(payload) == crc).then_some(payload)
}

/// fsyncs the directory holding `path`, so a rename or create is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir: PathBuf = path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".into(), Into::into);
    File::open(dir)?.sync_all()
}

/// CRC-32 (IEEE), bitwise: the log is fsync-bound, not checksum-bound.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[tokio::test]
    async fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (wal, lines) = Wal::open(&path).unwrap();
            assert!(lines.is_empty());
            wal.enqueue(b"{\"a\":1}".to_vec()).await.unwrap().unwrap();
            let pending: Vec<_> = (0..50).map(|i| wal.enqueue(format!("{{\"n\":{i}}}").into_bytes())).collect();
            for p in pending {
                p.await.unwrap().unwrap();
            }
        }
        // A crash mid-write leaves half a line behind.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"deadbeef {\"half\":").unwrap();
        drop(f);
        let (wal, lines) = Wal::open(&path).unwrap();
        assert_eq!(lines.len(), 51);
        assert_eq!(lines[0], b"{\"a\":1}");
        assert_eq!(lines[50], b"{\"n\":49}");
        wal.enqueue(b"{\"after\":true}".to_vec()).await.unwrap().unwrap();
        drop(wal);
        let (_, lines) = Wal::open(&path).unwrap();
        assert_eq!(lines.len(), 52, "appends after a cut tail land on a clean line");
    }

    #[test]
    fn a_flipped_bit_mid_log_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut bytes = encode_line(b"{\"ok\":1}");
        let mut bad = encode_line(b"{\"ok\":2}");
        bad[12] ^= 0x01;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode_line(b"{\"ok\":3}"));
        std::fs::write(&path, &bytes).unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(err.to_string().contains("corrupt record"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn rewrite_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        std::fs::write(&path, encode_line(b"old")).unwrap();
        Wal::rewrite(&path, vec![b"new1".to_vec(), b"new2".to_vec()]).unwrap();
        let (_, lines) = Wal::open(&path).unwrap();
        assert_eq!(lines, vec![b"new1".to_vec(), b"new2".to_vec()]);
    }
}
