//! The load generator: C connections in a closed loop of GETs and SETs over K keys whose
//! values are a function of the key, so every reply can be checked and "every key intact" can
//! be verified at the end. Completed requests are counted per 100 ms bucket, with the longest
//! wait a client saw in that bucket; error replies, wrong values and connection errors are
//! failures. A connection that fails reconnects and carries on (the failure is counted).

use crate::client::{Client, ClientError};
use crate::resp::Reply;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The width of one throughput bucket.
pub const BUCKET: Duration = Duration::from_millis(100);
/// How many buckets a run can fill (two hours); later completions count in the last one.
const BUCKETS: usize = 72_000;

/// The key of index `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("key:{i:07}").into_bytes()
}

/// The value of the key of index `i`: 16 bytes, different for every key, the same on every run.
pub fn value(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", x ^ (x >> 31)).into_bytes()
}

/// What the load does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Connections, each a closed loop (default 50).
    pub connections: usize,
    /// Keys `0..keys` are read and written.
    pub keys: u64,
    /// Commands sent together before the replies are read (1: no pipelining).
    pub pipeline: usize,
    /// Percentage of commands that are SETs (of the key's own value); the rest are GETs.
    pub set_percent: u32,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig { connections: 50, keys: 1_000_000, pipeline: 1, set_percent: 10 }
    }
}

/// Counters shared by every connection of a load.
pub struct Stats {
    start: Instant,
    completed: Box<[AtomicU64]>,
    /// The longest wait (µs) of a request completed in each bucket; after a connection error,
    /// the wait runs from the failed request's send until the next reply on a new connection.
    max_wait_us: Box<[AtomicU64]>,
    /// GETs answered "no such key" in each bucket.
    missing: Box<[AtomicU64]>,
    counts: [AtomicU64; 7],
}

/// One bucket of a load's series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Requests completed (answered, correctly or not).
    pub completed: u64,
    /// Of those, GETs of keys the server did not have.
    pub missing: u64,
    /// The longest wait of a client for a reply completed in the bucket (µs).
    pub max_wait_us: u64,
}

#[derive(Clone, Copy)]
enum Count {
    /// GET or SET answered as expected.
    Ok = 0,
    /// GET of a key the server does not have (state lost).
    Missing,
    /// An error reply (`-ERR …`).
    ErrorReply,
    /// A reply that is not what the command must answer (a wrong value).
    Wrong,
    /// A request whose connection failed before its reply.
    ConnectionLost,
    /// Connections made again after an error.
    Reconnects,
    /// Connection attempts that failed (nothing listening yet).
    ConnectFailures,
}

/// A load's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub ok: u64,
    pub missing: u64,
    pub error_replies: u64,
    pub wrong_values: u64,
    pub connection_lost: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
}

impl Totals {
    /// Failed requests: error replies, wrong values and requests lost with their connection.
    pub fn failed(&self) -> u64 {
        self.error_replies + self.wrong_values + self.connection_lost
    }
    /// Requests answered (correctly or not).
    pub fn completed(&self) -> u64 {
        self.ok + self.missing + self.error_replies + self.wrong_values
    }
}

impl Stats {
    pub fn new(start: Instant) -> Stats {
        let zeros = || (0..BUCKETS).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Stats { start, completed: zeros(), max_wait_us: zeros(), missing: zeros(), counts: Default::default() }
    }

    /// When bucket 0 began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn bucket(&self, at: Instant) -> usize {
        ((at.saturating_duration_since(self.start).as_micros() / BUCKET.as_micros()) as usize).min(BUCKETS - 1)
    }

    fn count(&self, what: Count, n: u64) {
        self.counts[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn completed_at(&self, at: Instant, waited: Duration, what: Count) {
        let b = self.bucket(at);
        self.completed[b].fetch_add(1, Ordering::Relaxed);
        self.max_wait_us[b].fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
        if let Count::Missing = what {
            self.missing[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count(what, 1);
    }

    pub fn totals(&self) -> Totals {
        let c = |w: Count| self.counts[w as usize].load(Ordering::Relaxed);
        Totals {
            ok: c(Count::Ok),
            missing: c(Count::Missing),
            error_replies: c(Count::ErrorReply),
            wrong_values: c(Count::Wrong),
            connection_lost: c(Count::ConnectionLost),
            reconnects: c(Count::Reconnects),
            connect_failures: c(Count::ConnectFailures),
        }
    }

    /// The buckets from 0 to the one holding `until` (seconds since the start).
    pub fn series(&self, until: f64) -> Vec<Bucket> {
        let n = ((until / BUCKET.as_secs_f64()).ceil() as usize).clamp(1, BUCKETS);
        (0..n)
            .map(|b| Bucket {
                completed: self.completed[b].load(Ordering::Relaxed),
                missing: self.missing[b].load(Ordering::Relaxed),
                max_wait_us: self.max_wait_us[b].load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A small deterministic generator of which key and which command come next.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One connection's closed loop until `stop` is set.
async fn connection_loop(addr: String, cfg: LoadConfig, seed: u64, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut rng = XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut client: Option<Client> = None;
    // Set when a request was lost with its connection: the client's wait continues until a
    // reply comes on a new connection.
    let mut waiting_since: Option<Instant> = None;
    let mut batch: Vec<(bool, u64)> = Vec::with_capacity(cfg.pipeline);
    while !stop.load(Ordering::Relaxed) {
        let conn = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr.as_str()).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    stats.count(Count::ConnectFailures, 1);
                    // Nothing listens on the address for a moment (a restart): try again soon.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        batch.clear();
        for _ in 0..cfg.pipeline {
            let r = rng.next();
            let i = (r >> 8) % cfg.keys;
            let set = (r & 0xff) % 100 < cfg.set_percent as u64;
            if set {
                conn.queue(&[&b"SET"[..], &key(i), &value(i)]);
            } else {
                conn.queue(&[&b"GET"[..], &key(i)]);
            }
            batch.push((set, i));
        }
        let sent = Instant::now();
        let began = *waiting_since.get_or_insert(sent);
        let mut failed: Option<ClientError> = conn.flush().await.err();
        let mut answered = 0;
        if failed.is_none() {
            for &(set, i) in &batch {
                match conn.read_reply().await {
                    Ok(reply) => {
                        let now = Instant::now();
                        stats.completed_at(now, now - if answered == 0 { began } else { sent }, judge(set, i, &reply));
                        answered += 1;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if answered > 0 {
            waiting_since = None;
        }
        if failed.is_some() {
            stats.count(Count::ConnectionLost, (batch.len() - answered) as u64);
            stats.count(Count::Reconnects, 1);
            client = None;
        }
    }
}

fn judge(set: bool, i: u64, reply: &Reply) -> Count {
    match reply {
        Reply::Error(_) => Count::ErrorReply,
        Reply::Simple(s) if set && s == "OK" => Count::Ok,
        Reply::Bulk(Some(v)) if !set && *v == value(i) => Count::Ok,
        Reply::Bulk(None) if !set => Count::Missing,
        _ => Count::Wrong,
    }
}

/// The tokio runtime the load runs on, and one-shot operations on a server.
pub struct Generator {
    rt: tokio::runtime::Runtime,
}

/// A load running until [`RunningLoad::stop`].
pub struct RunningLoad {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What reading every key back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub keys: u64,
    pub intact: u64,
    pub missing: u64,
    pub wrong: u64,
}

impl Generator {
    /// A runtime with `threads` worker threads (the load's own CPU share).
    pub fn new(threads: usize) -> std::io::Result<Generator> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
        Ok(Generator { rt })
    }

    /// Runs `f` on the generator's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One command on a new connection.
    pub fn command<A: AsRef<[u8]>>(&self, addr: &str, args: &[A]) -> Result<Reply, ClientError> {
        self.rt.block_on(async {
            let mut c = Client::connect(addr).await?;
            c.command(args).await
        })
    }

    /// The server's INFO text.
    pub fn info(&self, addr: &str) -> Result<String, ClientError> {
        match self.command(addr, &["INFO"])? {
            Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text).into_owned()),
            other => Ok(other.to_string()),
        }
    }

    /// The value of the line `field:` of the server's INFO.
    pub fn info_field(&self, addr: &str, field: &str) -> Result<Option<String>, ClientError> {
        let info = self.info(addr)?;
        Ok(info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).map(|v| v.trim().to_string()))
    }

    /// The number of keys the server holds (DBSIZE).
    pub fn dbsize(&self, addr: &str) -> Result<i64, ClientError> {
        match self.command(addr, &["DBSIZE"])? {
            Reply::Integer(n) => Ok(n),
            other => Err(ClientError::Protocol(crate::resp::ProtocolError::BadInteger {
                offset: 0,
                text: other.to_string(),
            })),
        }
    }

    /// SETs keys `0..keys` to their values, pipelined `batch` at a time over `connections`
    /// connections. Any reply but `+OK` is an error naming the key.
    pub fn fill(&self, addr: &str, keys: u64, connections: usize, batch: usize) -> anyhow::Result<()> {
        self.over_keys(
            addr,
            keys,
            connections,
            batch,
            |i, c| c.queue(&[&b"SET"[..], &key(i), &value(i)]),
            |i, reply| match reply {
                Reply::Simple(s) if s == "OK" => Ok(0),
                other => anyhow::bail!("SET key:{i:07} answered {other}"),
            },
        )
        .map(|_| ())
    }

    /// Reads every key `0..keys` back (pipelined) and counts the intact ones.
    pub fn verify(&self, addr: &str, keys: u64, connections: usize, batch: usize) -> anyhow::Result<Verified> {
        let counts = self.over_keys(
            addr,
            keys,
            connections,
            batch,
            |i, c| c.queue(&[&b"GET"[..], &key(i)]),
            |i, reply| {
                Ok(match reply {
                    Reply::Bulk(Some(v)) if v == value(i) => 0,
                    Reply::Bulk(None) => 1,
                    _ => 2,
                })
            },
        )?;
        let [intact, missing, wrong] = counts;
        Ok(Verified { keys, intact, missing, wrong })
    }

    /// Sends `send(i)` for each key, `batch` per round trip, `connections` connections side by
    /// side; `check(i, reply)` gives the class (0, 1 or 2) each reply is counted in.
    fn over_keys(
        &self,
        addr: &str,
        keys: u64,
        connections: usize,
        batch: usize,
        send: fn(u64, &mut Client),
        check: fn(u64, Reply) -> anyhow::Result<usize>,
    ) -> anyhow::Result<[u64; 3]> {
        self.rt.block_on(async {
            let connections = connections.max(1) as u64;
            let mut tasks = Vec::new();
            for c in 0..connections {
                let addr = addr.to_string();
                let batch = batch.max(1) as u64;
                tasks.push(tokio::spawn(async move {
                    let mut counts = [0u64; 3];
                    let mut client = Client::connect(addr.as_str()).await?;
                    // Connection c takes keys c, c + C, c + 2C, … in batches.
                    let mine: Vec<u64> = (c..keys).step_by(connections as usize).collect();
                    for chunk in mine.chunks(batch as usize) {
                        for &i in chunk {
                            send(i, &mut client);
                        }
                        let replies = client.read_replies().await?;
                        for (&i, reply) in chunk.iter().zip(replies) {
                            counts[check(i, reply)?] += 1;
                        }
                    }
                    anyhow::Ok(counts)
                }));
            }
            let mut total = [0u64; 3];
            for t in tasks {
                let counts = t.await??;
                for k in 0..3 {
                    total[k] += counts[k];
                }
            }
            Ok(total)
        })
    }

    /// Starts the load on `addr`, counting into `stats`.
    pub fn start(&self, addr: &str, cfg: &LoadConfig, stats: Arc<Stats>) -> RunningLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..cfg.connections)
            .map(|c| {
                self.rt.spawn(connection_loop(addr.to_string(), cfg.clone(), c as u64 + 1, stats.clone(), stop.clone()))
            })
            .collect();
        RunningLoad { stats, stop, tasks }
    }

    /// Stops a load: each connection finishes the batch it is waiting for.
    pub fn stop(&self, load: RunningLoad) -> Totals {
        load.stop.store(true, Ordering::Relaxed);
        self.rt.block_on(async {
            for t in load.tasks {
                let _ = t.await;
            }
        });
        load.stats.totals()
    }
}

impl RunningLoad {
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_a_function_of_the_key() {
        assert_eq!(value(7), value(7));
        assert_eq!(value(7).len(), 16);
        let distinct: std::collections::HashSet<_> = (0..10_000).map(value).collect();
        assert_eq!(distinct.len(), 10_000);
        assert_eq!(key(42), b"key:0000042");
    }

    #[test]
    fn replies_are_judged_by_the_command_and_the_key() {
        assert!(matches!(judge(false, 3, &Reply::Bulk(Some(value(3)))), Count::Ok));
        assert!(matches!(judge(false, 3, &Reply::Bulk(Some(value(4)))), Count::Wrong));
        assert!(matches!(judge(false, 3, &Reply::Bulk(None)), Count::Missing));
        assert!(matches!(judge(true, 3, &Reply::Simple("OK".into())), Count::Ok));
        assert!(matches!(judge(true, 3, &Reply::Bulk(None)), Count::Wrong));
        assert!(matches!(judge(true, 3, &Reply::Error("ERR no".into())), Count::ErrorReply));
    }

    #[test]
    fn completions_land_in_their_bucket_with_the_longest_wait() {
        let start = Instant::now();
        let stats = Stats::new(start);
        stats.completed_at(start + Duration::from_millis(50), Duration::from_micros(10), Count::Ok);
        stats.completed_at(start + Duration::from_millis(250), Duration::from_micros(900), Count::Missing);
        stats.completed_at(start + Duration::from_millis(299), Duration::from_micros(30), Count::Ok);
        let b = |completed, missing, max_wait_us| Bucket { completed, missing, max_wait_us };
        assert_eq!(stats.series(0.3), vec![b(1, 0, 10), b(0, 0, 0), b(2, 1, 900)]);
        assert_eq!(stats.totals(), Totals { ok: 2, missing: 1, ..Totals::default() });
    }
}
