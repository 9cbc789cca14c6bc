//! The orchestrator's store under real faults, through the app on both
//! paths: a small tmpfs filled during a burst, an ext4 the kernel remounts
//! read-only during a burst, a crash with a payment half-way (issue 12,
//! defect 2), and ownership of resources (issue 12, defect 3).
//!
//! The fault tests mount file systems, which needs root (the test machines
//! and CI run as root); where mounting is not permitted they say so and
//! skip.

use http::StatusCode;
use paymesh_system_tests::{AppProcess, Client, Orchestrator, Reply, eventually};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const ROUTES: [&str; 2] = ["legacy", "orchestration"];

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount(8) runs");
        if !out.status.success() {
            println!(
                "SKIPPED: cannot mount a tmpfs here ({}); this test needs root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir: dir.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn headers<'a>(route: &'a str, key: &'a str, client: &'a str) -> [(&'a str, &'a str); 3] {
    [("x-paymesh-route", route), ("idempotency-key", key), ("x-paymesh-client", client)]
}

async fn post(client: &Client, url: &str, route: &str, key: &str, who: &str, body: &Value) -> Reply {
    client.post(url, &headers(route, key, who), body).await
}

async fn get(client: &Client, url: &str, route: &str, who: &str) -> Reply {
    client.get(url, &[("x-paymesh-route", route), ("x-paymesh-client", who)]).await
}

fn charge_body(amount: u64) -> Value {
    json!({"amount": amount, "currency": "usd", "source": "tok_visa"})
}

/// Fills the file system holding `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xA5u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last partial block too: leave not one page free.
    while f.write_all(&block[..512]).is_ok() {}
    let _ = f.sync_all();
    path
}

/// An orchestrator on `data`, the app in front of it (logs in `logs`), a
/// client and the charges URL.
async fn pod(data: &Path, logs: &Path) -> (Orchestrator, AppProcess, Client, String) {
    pod_with(data, logs, &[], "5s").await
}

/// [`pod`] with slow steps (1 s each) and a 2 s claim lease, so that the
/// orchestrator can be killed with a payment half-way.
async fn slow_pod(data: &Path, logs: &Path) -> (Orchestrator, AppProcess, Client, String) {
    pod_with(data, logs, &["--step-delay", "1s", "--claim-lease", "2s"], "20s").await
}

async fn pod_with(
    data: &Path,
    logs: &Path,
    args: &[&str],
    timeout: &str,
) -> (Orchestrator, AppProcess, Client, String) {
    let orchestrator = Orchestrator::start(data, logs, args).await;
    let app = AppProcess::start(&orchestrator.url, logs, &["--timeout", timeout]).await;
    let url = format!("{}/v1/charges", app.url);
    (orchestrator, app, Client::new(), url)
}

/// `n` charges on alternating paths, each acknowledged: (key, charge).
async fn charges_before(client: &Client, url: &str, n: usize) -> Vec<(String, Value)> {
    let mut acknowledged = Vec::new();
    for i in 0..n {
        let key = format!("before-{i}");
        let r = post(client, url, ROUTES[i % 2], &key, "faults", &charge_body(100 + i as u64)).await;
        assert_eq!(r.status, 201, "{}", r.json());
        acknowledged.push((key, r.json()));
    }
    acknowledged
}

/// Retries `key` with its body until it is created, for at most 20 s,
/// accepting only `waits` meanwhile (a key an attempt still holds, a store
/// still failing); the charge has the body's amount.
async fn retry_until_created(client: &Client, url: &str, route: &str, key: &str, amount: u64, waits: &[u16]) -> Value {
    let started = Instant::now();
    loop {
        let r = post(client, url, route, key, "faults", &charge_body(amount)).await;
        let status = r.status.as_u16();
        if status == 201 {
            let charge = r.json();
            assert_eq!(charge["amount"], amount, "{route} {key}");
            return charge;
        }
        assert!(waits.contains(&status), "{route}: retry of {key}: {status} {}", r.json());
        assert!(started.elapsed() < Duration::from_secs(20), "{route}: {key} never converged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Charge `n` of a burst on alternating paths, keyed `burst-N`, with the
/// amount the retries of a refused one repeat: (n, key, reply).
async fn burst_charge(client: Client, url: String, n: usize) -> (usize, String, Reply) {
    let key = format!("burst-{n}");
    let r = post(&client, &url, ROUTES[n % 2], &key, "faults", &charge_body(1000 + n as u64)).await;
    (n, key, r)
}

/// Files one reply of [`burst_charge`]: a 201 as acknowledged (key,
/// charge), a 503 `api_error` as refused (n, key); anything else fails.
fn sort_burst_reply(
    (n, key, r): (usize, String, Reply),
    acknowledged: &mut Vec<(String, Value)>,
    refused: &mut Vec<(usize, String)>,
) {
    match r.status.as_u16() {
        201 => acknowledged.push((key, r.json())),
        503 => {
            assert_eq!(r.json()["error"]["type"], "api_error", "{}", r.json());
            refused.push((n, key));
        }
        other => panic!("burst {n}: {other} {}", r.json()),
    }
}

/// A charge of 1000 with `key` through `route`, in a task of its own, for
/// a crash to cut short: its status.
fn spawn_charge(client: &Client, url: &str, route: &'static str, key: String) -> JoinHandle<StatusCode> {
    let (client, url) = (client.clone(), url.to_owned());
    tokio::spawn(async move { post(&client, &url, route, &key, "faults", &charge_body(1000)).await.status })
}

/// Every acknowledged charge reads back unchanged on both paths.
async fn all_readable(client: &Client, app: &str, acknowledged: &[(String, Value)]) {
    for (key, charge) in acknowledged {
        let id = charge["id"].as_str().unwrap();
        for route in ROUTES {
            let read = get(client, &format!("{app}/v1/charges/{id}"), route, "faults").await;
            assert_eq!(read.status, 200, "acknowledged charge {id} (key {key}) lost on {route}");
            assert_eq!(&read.json(), charge, "charge {id} changed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_serving_resumes_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("mnt"), "6m") else { return };
    let data = fs.dir.join("data");
    // The logs stay off the small file system.
    let (mut orchestrator, app, client, url) = pod(&data, dir.path()).await;
    let port = orchestrator.port;
    let mut acknowledged = charges_before(&client, &url, 10).await;

    // The disk fills up during a burst on both paths.
    let filler = fill(&fs.dir);
    let mut refused = Vec::new();
    let burst = (0..200).map(|n| burst_charge(client.clone(), url.clone(), n));
    for reply in futures_join(burst).await {
        sort_burst_reply(reply, &mut acknowledged, &mut refused);
    }
    assert!(!refused.is_empty(), "a full disk refused nothing: the test did not fill it");

    // Space comes back: the same process serves again, and each refused
    // key, retried with its body, ends as one payment.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(20), "a charge after freeing space", || {
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, "legacy", "after-free", "faults", &charge_body(7)).await.status == 201 }
    })
    .await;
    for (n, key) in &refused {
        // A refused attempt may still hold its key until its lease ends.
        let charge = retry_until_created(&client, &url, ROUTES[n % 2], key, 1000 + *n as u64, &[409, 503]).await;
        acknowledged.push((key.clone(), charge));
    }
    all_readable(&client, &app.url, &acknowledged).await;

    // And after a crash every acknowledged payment is still there.
    orchestrator.process.kill9();
    let _restarted = Orchestrator::start_on(port, &data, dir.path(), &[]).await;
    all_readable(&client, &app.url, &acknowledged).await;
    let entries: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        entries.iter().all(|n| n.to_string_lossy().starts_with("paymesh.db")),
        "the data dir holds the database only: {entries:?}"
    );
}

/// How a disk goes read-only in production: the device stops taking writes,
/// ext4 (mounted `errors=remount-ro,data_err=abort`) meets the write error,
/// aborts its journal and turns read-only under the open database. (`mount
/// -o remount,ro` by hand is refused with EBUSY while SQLite holds its files
/// open for writing.)
///
/// The fault is a real failing write, not the kernel's `trigger_fs_error`
/// knob: that one aborts the journal at an arbitrary instant, and this
/// kernel then loses the last fdatasync'd append of a plain file about once
/// in 45 tries after `e2fsck` (measured with a shell loop of append +
/// fdatasync, no SQLite involved), so it cannot tell a store that loses
/// acknowledged data from one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_the_kernel_turns_read_only_is_503_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Ext4::mount(dir.path(), "64M") else { return };
    let data = fs.dir.join("data");
    let (mut orchestrator, app, client, url) = pod(&data, dir.path()).await;
    let port = orchestrator.port;
    let mut acknowledged = charges_before(&client, &url, 6).await;

    // The device has 1 MiB left and fails in the middle of a wave of
    // concurrent charges on both paths (how many waves fit depends on how
    // the writes were group-committed).
    let failed = fs.fail_after(1 << 20);
    let mut refused = Vec::new();
    let mut n = 0;
    while refused.is_empty() {
        assert!(n < 4000, "{n} charges and the device never failed");
        let wave: Vec<_> = (n..n + 40).map(|n| tokio::spawn(burst_charge(client.clone(), url.clone(), n))).collect();
        n += wave.len();
        for t in wave {
            sort_burst_reply(t.await.unwrap(), &mut acknowledged, &mut refused);
        }
    }
    println!("burst: {} acknowledged in all, {} refused once the disk failed", acknowledged.len(), refused.len());
    for route in ROUTES {
        let r = post(&client, &url, route, &format!("ro-{route}"), "faults", &charge_body(5)).await;
        assert_eq!(r.status, 503, "{route} on a failed disk: {}", r.json());
        refused.push((usize::MAX, format!("ro-{route}")));
    }
    assert!(fs.read_only(), "the kernel did not turn the file system read-only");

    // The operator replaces the disk (here: gives the device its space
    // back), checks the file system (the kernel keeps one that failed
    // read-only until it is checked and mounted again) and restarts the
    // orchestrator: every acknowledged payment is there, and every refused
    // key, retried with its body, ends as one payment.
    orchestrator.process.kill9();
    fs.repair(failed);
    let _restarted = Orchestrator::start_on(port, &data, dir.path(), &[]).await;
    all_readable(&client, &app.url, &acknowledged).await;
    for (n, key) in &refused {
        let (route, amount) = if *n == usize::MAX { (&key[3..], 5) } else { (ROUTES[n % 2], 1000 + *n as u64) };
        retry_until_created(&client, &url, route, key, amount, &[409, 503]).await;
    }
}

/// How [`Ext4`] mounts: a write error turns the file system read-only.
const EXT4_OPTIONS: &str = "errors=remount-ro,data_err=abort";

/// An ext4 file system in a sparse image on a loop device, mounted
/// `errors=remount-ro,data_err=abort`. The image lives on a tmpfs of its
/// own (the "device"), which [`Ext4::fail`] fills so that the device fails
/// every write to a block the file system had not written yet. Unmounted
/// and detached on drop.
struct Ext4 {
    dir: PathBuf,
    device: String,
    backing: Tmpfs,
}

impl Ext4 {
    /// The file system at `root/mnt`, its device at `root/device`; `None`
    /// (with the reason printed) where loop devices or mounting are not
    /// permitted.
    fn mount(root: &Path, size: &str) -> Option<Ext4> {
        let run = |cmd: &mut Command| -> Result<String, String> {
            let out = cmd.output().map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() { Ok(text) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
        };
        // Room for the whole image, so nothing fails before `fail`.
        let backing = Tmpfs::mount(&root.join("device"), size)?;
        let image = backing.dir.join("img");
        let dir = root.join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let made = run(Command::new("truncate").args(["-s", size]).arg(&image))
            .and_then(|_| run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&image)))
            .and_then(|_| run(Command::new("losetup").args(["-f", "--show"]).arg(&image)));
        let device = match made {
            Ok(device) => device,
            Err(e) => {
                println!("SKIPPED: cannot make an ext4 loop device here ({e}); this test needs root");
                return None;
            }
        };
        let fs = Ext4 { dir, device, backing };
        if let Err(e) = run(Command::new("mount").args(["-o", EXT4_OPTIONS, &fs.device]).arg(&fs.dir)) {
            println!("SKIPPED: cannot mount {} here ({e}); this test needs root", fs.device);
            return None;
        }
        Some(fs)
    }

    /// The device fails once `headroom` more bytes are stored: its tmpfs is
    /// filled up to that, so the loop driver then fails each write to a
    /// block not stored yet. The filler's path.
    fn fail_after(&self, headroom: u64) -> PathBuf {
        let filler = fill(&self.backing.dir);
        let f = std::fs::OpenOptions::new().write(true).open(&filler).unwrap();
        f.set_len(f.metadata().unwrap().len().saturating_sub(headroom)).unwrap();
        filler
    }

    /// Read-only in the mount table, or refusing a write with EROFS (how
    /// this kernel reports an ext4 that aborted its journal).
    fn read_only(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let listed = mounts.lines().any(|l| {
            let f: Vec<_> = l.split(' ').collect();
            f.len() > 3 && Path::new(f[1]) == self.dir && f[3].split(',').any(|o| o == "ro" || o == "emergency_ro")
        });
        let probe = self.dir.join(".probe");
        let refused =
            matches!(std::fs::write(&probe, b"x"), Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EROFS as i32));
        let _ = std::fs::remove_file(&probe);
        listed || refused
    }

    /// Gives the device its space back, then unmounts, checks and mounts
    /// the file system again read-write.
    fn repair(&self, filler: PathBuf) {
        let ok = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
        std::fs::remove_file(filler).unwrap();
        ok(Command::new("umount").arg(&self.dir));
        // 1: errors corrected; what a repaired disk reports.
        let fsck = Command::new("e2fsck").args(["-f", "-y", &self.device]).output().unwrap();
        assert!(matches!(fsck.status.code(), Some(0 | 1)), "e2fsck: {}", String::from_utf8_lossy(&fsck.stdout));
        ok(Command::new("mount").args(["-o", EXT4_OPTIONS, &self.device]).arg(&self.dir));
        assert!(!self.read_only());
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        // Then `backing` unmounts the device's tmpfs.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_key_keeps_its_fingerprint_across_a_crash_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Slow steps, so that the orchestrator dies with both payments half-way.
    let (mut orchestrator, _app, client, url) = slow_pod(&data, dir.path()).await;

    let inflight: Vec<_> =
        ROUTES.into_iter().map(|route| spawn_charge(&client, &url, route, format!("crash-{route}"))).collect();
    // Legacy: begin ~1 s, risk ~2 s, authorize ~3 s, capture ~4 s.
    // Orchestration: begin at once, authorize ~2 s, capture ~3 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    orchestrator.process.kill9();
    for t in inflight {
        let status = t.await.unwrap();
        assert!(status.is_server_error(), "the crash answered {status}");
    }

    let _restarted = Orchestrator::start_on(orchestrator.port, &data, dir.path(), &["--claim-lease", "2s"]).await;
    for route in ROUTES {
        let key = format!("crash-{route}");
        let other = post(&client, &url, route, &key, "faults", &charge_body(2500)).await;
        assert_eq!(other.status, 422, "{route}: a different body after the restart: {}", other.json());
        assert_eq!(other.json()["error"]["type"], "idempotency_error");
        // The same body finishes the first payment, at its amount.
        retry_until_created(&client, &url, route, &key, 1000, &[409]).await;
        let again = post(&client, &url, route, &key, "faults", &charge_body(2500)).await;
        assert_eq!(again.status, 422, "{route}: a different body after completion");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_captured_before_a_crash_completes_on_retry_not_declined() {
    // The legacy path dies after the capture and before the ledger entry:
    // the retry replays the authorization, now captured, and must finish
    // the payment (it used to answer 422 card_declined, money captured).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut orchestrator, app, client, url) = slow_pod(&data, dir.path()).await;
    let first = spawn_charge(&client, &url, "legacy", "captured".to_owned());
    // begin ~1 s, risk ~2 s, authorize ~3 s, capture ~4 s, ledger ~5 s.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    orchestrator.process.kill9();
    assert!(first.await.unwrap().is_server_error());

    let _restarted = Orchestrator::start_on(orchestrator.port, &data, dir.path(), &["--claim-lease", "2s"]).await;
    let charge = retry_until_created(&client, &url, "legacy", "captured", 1000, &[409]).await;
    all_readable(&client, &app.url, &[("captured".into(), charge)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_resources_are_404_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), &[]).await;
    let app = AppProcess::start(&orchestrator.url, dir.path(), &["--operator-clients", "ops"]).await;
    let client = Client::new();
    let base = app.url.clone();

    for route in ROUTES {
        let k = |what: &str| format!("{route}-{what}");
        let charge = post(&client, &format!("{base}/v1/charges"), route, &k("ch"), "alice", &charge_body(1000)).await;
        assert_eq!(charge.status, 201);
        let charge_id = charge.json()["id"].as_str().unwrap().to_owned();
        let refund = post(
            &client,
            &format!("{base}/v1/refunds"),
            route,
            &k("re"),
            "alice",
            &json!({"charge": charge_id, "amount": 100}),
        )
        .await;
        assert_eq!(refund.status, 201, "{}", refund.json());
        let disb = post(
            &client,
            &format!("{base}/v1/disbursements"),
            route,
            &k("di"),
            "alice",
            &json!({"amount": 500, "currency": "eur", "destination": "acct_1"}),
        )
        .await;
        assert_eq!(disb.status, 201);
        let reads = [
            format!("{base}/v1/charges/{charge_id}"),
            format!("{base}/v1/refunds/{}", refund.json()["id"].as_str().unwrap()),
            format!("{base}/v1/disbursements/{}", disb.json()["id"].as_str().unwrap()),
        ];
        for read in &reads {
            assert_eq!(get(&client, read, route, "alice").await.status, 200, "{route} {read}");
            let theirs = get(&client, read, route, "mallory").await;
            assert_eq!(theirs.status, 404, "{route} {read}: another client");
            assert_eq!(theirs.json()["error"]["code"], "resource_missing");
            assert_eq!(get(&client, read, route, "ops").await.status, 200, "{route} {read}: an operator");
        }
        // Refunding another client's charge: as if it did not exist, with
        // and without an amount (the orchestration path reads the charge
        // first for an amount), for an operator as well.
        for (who, amount) in [("mallory", json!(100)), ("mallory", Value::Null), ("ops", json!(1))] {
            let body = if amount.is_null() {
                json!({"charge": charge_id})
            } else {
                json!({"charge": charge_id, "amount": amount})
            };
            let key = format!("{route}-steal-{who}-{amount}");
            let r = post(&client, &format!("{base}/v1/refunds"), route, &key, who, &body).await;
            assert_eq!(r.status, 404, "{route}: {who} refunds alice's charge: {}", r.json());
            assert_eq!(r.json()["error"]["code"], "resource_missing");
        }
        let after = get(&client, &reads[0], route, "alice").await;
        assert_eq!(after.json()["amount_refunded"], 100, "{route}: only alice's refund moved money");
    }

    // The orchestrator's own read endpoints need the reader named.
    let orch = &orchestrator.url;
    let charge = post(&client, &format!("{base}/v1/charges"), "legacy", "direct", "a b&c", &charge_body(5)).await;
    let id = charge.json()["id"].as_str().unwrap().to_owned();
    for (path, param) in [("components/ledger/charges", "client"), ("workflows/v1/charges", "client_ref")] {
        let url = format!("{orch}/{path}/{id}");
        assert_eq!(client.get(&url, &[]).await.status, 400, "{path} without a reader");
        assert_eq!(client.get(&format!("{url}?{param}=a%20b%26c"), &[]).await.status, 200, "{path} owner");
        assert_eq!(client.get(&format!("{url}?{param}=a"), &[]).await.status, 404, "{path} another client");
        assert_eq!(client.get(&format!("{url}?any_client=1"), &[]).await.status, 200, "{path} operator");
    }
}

/// Runs the futures concurrently on this task and collects their outputs.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
