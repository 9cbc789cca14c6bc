//! The fleet task: membership, demand reports and shares through etcd.
//!
//! One loop, woken by its report tick, by the member watch, by the lease's
//! keep-alive answers or by shutdown. Each tick takes the fleet clients'
//! admitted and refused counts from their buckets, writes the member
//! record under this sidecar's lease and recomputes the shares; each watch
//! event updates the view of the other members and recomputes too, so a
//! join or a lease expiry moves shares within milliseconds of etcd seeing
//! it. Any etcd error drops the session (lease, watch and all); the task
//! reconnects over the sidecar's one etcd connection (`crate::etcd`) with
//! jittered, capped backoff, granting a new lease and reading the whole
//! prefix again. The prefix is read at start (`migration.prefix`), where
//! etcd is at each connection; the rates, bursts and `fleet.min_share` are
//! read from the live config on every recompute, so a reload changes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Client, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions, WatchStream,
};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::share::{self, ClientReport, MemberRecord, Refusal};
use super::{Mode, Share};
use crate::config::{Rate, Scope};
use crate::etcd::{Backoff, Conn, ErrorKind, Etcd};
use crate::layers::throttle::TokenBucket;
use crate::state::Shared;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The longest any single etcd call may take before the connection is
/// given up as dead.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// An open etcd session: the client, this sidecar's lease, the member watch.
struct Session {
    conn: Conn,
    client: Client,
    lease: i64,
    keeper: LeaseKeeper,
    keep_alive: LeaseKeepAliveStream,
    watch: WatchStream,
}

/// What woke the loop.
enum Wake {
    Stop,
    Tick,
    /// A watch answer or a keep-alive answer; `Err` drops the session.
    Etcd(Result<Option<etcd_client::WatchResponse>, String>),
}

struct FleetTask {
    shared: Arc<Shared>,
    etcd: Etcd,
    /// `<prefix>/fleet/`.
    dir: String,
    /// `<prefix>/fleet/<pod>`.
    key: String,
    /// The other members, by pod, as etcd last said.
    view: BTreeMap<String, MemberRecord>,
    /// This sidecar's record as last written (or about to be).
    mine: MemberRecord,
    counted_at: Instant,
    /// The last successful exchange with etcd.
    contact: Option<Instant>,
    /// Members each client was split among when shares were last live.
    known_members: BTreeMap<String, usize>,
    /// Each fleet client's share in force.
    applied: BTreeMap<String, Share>,
}

/// Runs until shutdown. Without a `scope: fleet` client (at start) or
/// without etcd there is nothing to do.
pub async fn run(shared: Arc<Shared>, etcd: Etcd, mut shutdown: watch::Receiver<bool>) {
    let (prefix, fleet, any) = {
        let snap = shared.live.load();
        let c = &snap.config;
        (c.migration.prefix.clone(), c.fleet, c.clients.iter().any(|c| c.scope == Scope::Fleet))
    };
    if !any || !etcd.configured() {
        tracing::info!("no scope: fleet client (or no etcd): every rate is local");
        return;
    }
    let pod = shared.fleet.pod.clone();
    let dir = format!("{}/fleet/", prefix.trim_end_matches('/'));
    let mut task = FleetTask {
        key: format!("{dir}{pod}"),
        dir,
        etcd,
        view: BTreeMap::new(),
        mine: MemberRecord { v: share::VERSION, pod, at_ms: 0, interval_ms: 0, reports: 0, clients: BTreeMap::new() },
        counted_at: Instant::now(),
        contact: None,
        known_members: BTreeMap::new(),
        applied: BTreeMap::new(),
        shared,
    };
    task.shared.fleet.status().mode = Mode::Startup;
    task.recompute(false);
    tracing::info!(key = %task.key, every = ?fleet.report_interval, lease_ttl = ?fleet.lease_ttl, "fleet quotas: joining");

    let mut tick = tokio::time::interval(fleet.report_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut session: Option<Session> = None;
    let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX);
    let mut retry_at = Instant::now();
    let mut failing = false;
    loop {
        let wake = tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => Wake::Stop,
            _ = tick.tick() => Wake::Tick,
            r = next_answer(&mut session) => Wake::Etcd(r),
        };
        let result = match wake {
            Wake::Stop => {
                if let Some(mut s) = session.take() {
                    // Leave at once rather than after a lease TTL.
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.client.lease_revoke(s.lease)).await;
                }
                task.shared.fleet.status().connected = false;
                return;
            }
            Wake::Tick => {
                let r = match session.as_mut() {
                    Some(s) => {
                        task.count();
                        task.report(s).await
                    }
                    None if Instant::now() >= retry_at => match task.connect(fleet.lease_ttl).await {
                        Ok(s) => {
                            session = Some(s);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    None => Ok(()),
                };
                task.recompute(session.is_some());
                r
            }
            Wake::Etcd(Ok(Some(resp))) => {
                task.apply_watch(&resp);
                task.recompute(true);
                Ok(())
            }
            Wake::Etcd(Ok(None)) => Ok(()), // a keep-alive answer
            Wake::Etcd(Err(e)) => Err(e),
        };
        match result {
            Ok(()) if session.is_some() => {
                if failing {
                    tracing::info!("fleet quotas: etcd reached again; shares follow demand");
                    failing = false;
                }
                task.etcd.ok();
                backoff.reset();
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, grace = ?fleet.grace, "fleet quotas: etcd lost; keeping the last shares for the grace period");
                    failing = true;
                }
                // A connection that could not be made is recorded already.
                if let Some(s) = session.take() {
                    task.etcd.failed(Some(&s.conn), ErrorKind::Watch, &e);
                }
                task.shared.fleet.status().connected = false;
                retry_at = Instant::now() + backoff.next_wait();
                task.recompute(false);
            }
        }
    }
}

/// The next watch answer (`Ok(Some)`) or keep-alive answer (`Ok(None)`) of
/// the session; pending forever without one.
async fn next_answer(session: &mut Option<Session>) -> Result<Option<etcd_client::WatchResponse>, String> {
    let Some(s) = session.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        w = s.watch.message() => match w {
            Ok(Some(resp)) if resp.canceled() => Err(format!("watch canceled: {}", resp.cancel_reason())),
            Ok(Some(resp)) if resp.compact_revision() > 0 => Err("watch compacted; re-reading".into()),
            Ok(Some(resp)) => Ok(Some(resp)),
            Ok(None) => Err("watch stream closed".into()),
            Err(e) => Err(format!("watch: {e}")),
        },
        k = s.keep_alive.message() => match k {
            Ok(Some(r)) if r.ttl() > 0 => Ok(None),
            Ok(Some(_)) => Err("lease expired".into()),
            Ok(None) => Err("keep-alive stream closed".into()),
            Err(e) => Err(format!("keep-alive: {e}")),
        },
    }
}

async fn timed<T>(what: &str, f: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    crate::etcd::timed(what, CALL_TIMEOUT, f).await
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl FleetTask {
    /// Connects, takes a lease, writes this sidecar's record, reads every
    /// member and watches from the revision read.
    async fn connect(&mut self, lease_ttl: Duration) -> Result<Session, String> {
        let conn = self.etcd.connect().await?;
        match self.join(&conn, lease_ttl).await {
            Ok(session) => Ok(session),
            Err(e) => Err(self.etcd.failed(Some(&conn), ErrorKind::Watch, &e)),
        }
    }

    /// Over `conn`: the lease, this sidecar's record, the members, the watch.
    async fn join(&mut self, conn: &Conn, lease_ttl: Duration) -> Result<Session, String> {
        let mut client = conn.client.clone();
        let lease = timed("lease grant", client.lease_grant(lease_ttl.as_secs().max(1) as i64, None)).await?.id();
        let (keeper, keep_alive) = timed("keep-alive", client.lease_keep_alive(lease)).await?;
        self.put(&mut client, lease).await?;
        let snapshot =
            timed("read members", client.get(self.dir.as_str(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = snapshot.header().map_or(0, |h| h.revision());
        self.view.clear();
        for kv in snapshot.kvs() {
            self.apply_put(kv.key(), kv.value());
        }
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let watch = timed("watch", client.watch(self.dir.as_str(), Some(options))).await?;
        self.contact = Some(Instant::now());
        self.shared.fleet.status().connected = true;
        tracing::info!(members = self.view.len() + 1, "fleet quotas: joined the fleet");
        Ok(Session { conn: conn.clone(), client, lease, keeper, keep_alive, watch })
    }

    /// Takes the counts of the interval just ended into `mine`. While etcd
    /// is away the counts wait in the buckets, and the next report covers
    /// the whole time since the last one.
    fn count(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.counted_at);
        self.counted_at = now;
        let snap = self.shared.live.load();
        let mut clients = BTreeMap::new();
        for c in snap.clients.iter().filter(|c| c.scope == Scope::Fleet) {
            let (admitted, refused) = c.bucket.take_counts();
            let share = self.applied.get(&*c.id).map_or(0.0, |s| s.per_second);
            clients
                .insert(c.id.to_string(), ClientReport { admitted: admitted as f64, refused: refused as f64, share });
        }
        self.mine.clients = clients;
        // The first interval runs from start (or joining) and counts as one.
        self.mine.interval_ms = (elapsed.as_millis() as u64).max(1);
        self.mine.reports += 1;
        self.mine.at_ms = unix_ms(SystemTime::now());
    }

    /// Writes this sidecar's record and renews its lease.
    async fn report(&mut self, s: &mut Session) -> Result<(), String> {
        self.put(&mut s.client, s.lease).await?;
        timed("keep-alive", s.keeper.keep_alive()).await?;
        Ok(())
    }

    async fn put(&mut self, client: &mut Client, lease: i64) -> Result<(), String> {
        if self.mine.reports == 0 {
            // Joining: list the clients, no demand yet; the first report
            // counts from here.
            self.mine.at_ms = unix_ms(SystemTime::now());
            self.counted_at = Instant::now();
            let snap = self.shared.live.load();
            self.mine.clients = snap
                .clients
                .iter()
                .filter(|c| c.scope == Scope::Fleet)
                .map(|c| {
                    let _ = c.bucket.take_counts();
                    let share = self.applied.get(&*c.id).map_or(0.0, |s| s.per_second);
                    (c.id.to_string(), ClientReport { admitted: 0.0, refused: 0.0, share })
                })
                .collect();
        }
        let value = serde_json::to_vec(&self.mine).expect("a member record serializes");
        timed("report", client.put(self.key.as_str(), value, Some(PutOptions::new().with_lease(lease)))).await?;
        self.contact = Some(Instant::now());
        let mut status = self.shared.fleet.status();
        status.last_report = Some(SystemTime::now());
        status.connected = true;
        Ok(())
    }

    fn apply_watch(&mut self, resp: &etcd_client::WatchResponse) {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => self.apply_put(kv.key(), kv.value()),
                EventType::Delete => {
                    if let Some(pod) = self.pod_of(kv.key())
                        && self.view.remove(pod).is_some()
                    {
                        tracing::info!(pod, "fleet member left (lease expired or revoked)");
                    }
                }
            }
        }
        self.contact = Some(Instant::now());
    }

    fn pod_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(key).ok()?.strip_prefix(self.dir.as_str())
    }

    /// One member's record from etcd: checked, then kept or refused.
    fn apply_put(&mut self, key: &[u8], value: &[u8]) {
        let fleet = &self.shared.fleet;
        let Some(pod) = self.pod_of(key) else { return };
        if pod == self.mine.pod {
            return; // this sidecar's own record, known first-hand
        }
        let parsed = if !share::valid_pod(pod) {
            Err(Refusal::Pod)
        } else if !self.view.contains_key(pod) && self.view.len() + 1 >= share::MAX_MEMBERS {
            Err(Refusal::TooManyMembers)
        } else {
            share::parse_record(pod, value)
        };
        match parsed {
            Ok(record) => {
                let snap = self.shared.live.load();
                let unknown = record
                    .clients
                    .keys()
                    .filter(|id| snap.clients.by_id(id).is_none_or(|c| c.scope != Scope::Fleet))
                    .count();
                if unknown > 0 {
                    fleet.unknown_clients.inc_by(unknown as u64);
                }
                if !self.view.contains_key(pod) {
                    tracing::info!(pod, joining = record.joining(), "fleet member seen");
                }
                self.view.insert(pod.to_owned(), record);
            }
            Err(why) => {
                fleet.refused.with_label_values(&[why.label()]).inc();
                // A member whose record turns bad no longer counts; its
                // lease still has to expire for its key to go.
                self.view.remove(pod);
                tracing::warn!(pod = %pod.chars().take(64).collect::<String>(), reason = %why, "fleet member record refused");
            }
        }
    }

    /// Sets every fleet client's share: from the fleet's demand while etcd
    /// is `live`, else the last shares within the grace period, else rate /
    /// the last known member count.
    fn recompute(&mut self, live: bool) {
        let snap = self.shared.live.load();
        let cfg = snap.config.fleet;
        let mode = if live {
            Mode::Live
        } else {
            match self.contact {
                None => Mode::Startup,
                Some(t) if t.elapsed() < cfg.grace => Mode::Grace,
                Some(_) => Mode::Fallback,
            }
        };
        let mut shares = BTreeMap::new();
        for c in snap.clients.iter().filter(|c| c.scope == Scope::Fleet) {
            let id = &*c.id;
            let startup = || {
                let r = super::startup_rate(c.rate, cfg.min_share);
                Share { per_second: r.per_second, burst: r.burst, members: 0 }
            };
            let share = match mode {
                Mode::Live => {
                    let share = self.live_share(id, c.rate, cfg.min_share);
                    self.known_members.insert(id.to_owned(), share.members);
                    share
                }
                Mode::Grace => self.applied.get(id).copied().unwrap_or_else(startup),
                Mode::Fallback => match self.known_members.get(id) {
                    Some(&n) => {
                        let per_second = c.rate.per_second / n.max(1) as f64;
                        let burst = share::share_burst(c.rate.burst, c.rate.per_second, per_second);
                        Share { per_second, burst, members: n }
                    }
                    None => startup(),
                },
                Mode::Startup | Mode::Off => startup(),
            };
            apply(&c.bucket, share);
            self.shared.fleet.share_gauge.with_label_values(&[id]).set(share.per_second);
            shares.insert(id.to_owned(), share);
        }
        self.applied = shares.clone();
        let fleet = &self.shared.fleet;
        if live {
            fleet.members_gauge.set(self.view.len() as i64 + 1);
        }
        let mut status = fleet.status();
        status.mode = mode;
        status.shares = shares;
        status.members = self.view.clone();
        if self.mine.at_ms > 0 {
            status.members.insert(self.mine.pod.clone(), self.mine.clone());
        }
    }

    /// This sidecar's share of `id`'s rate among the members that list it.
    fn live_share(&self, id: &str, rate: Rate, min_share: f64) -> Share {
        let mut demands: Vec<Option<f64>> =
            self.view.values().filter(|m| m.clients.contains_key(id)).map(|m| m.demand(id)).collect();
        let mine = if self.mine.reports == 0 { None } else { self.mine.demand(id).or(Some(0.0)) };
        demands.push(mine);
        let shares = share::allocate(rate.per_second, min_share, &demands);
        let per_second = *shares.last().expect("this sidecar is a member");
        Share { per_second, burst: share::share_burst(rate.burst, rate.per_second, per_second), members: demands.len() }
    }
}

/// Puts `share` into the client's bucket. A share of zero would be a bucket
/// that never refills; a share is never below a millionth of a request per
/// second.
fn apply(bucket: &TokenBucket, share: Share) {
    bucket.set_rate(Rate { per_second: share.per_second.max(1e-6), burst: share.burst.max(1) });
}
