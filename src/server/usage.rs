//! The usage-log writer: one thread, one transaction per batch of rows (group commit); a
//! request waiting for its row is answered only once the batch holding it has committed.
//! It also records when personal access tokens were last used, in the same batches, and
//! folds refusals into one row per kind (address, key or token, reason) per minute.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::server::metrics::Metrics;
use crate::store::{Store, UsageRow};

/// Why a batch could not be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The store is out of reach (PostgreSQL down): answered 503, worth a retry.
    Unavailable,
    /// The store takes no writes (disk full, read-only): answered 503 until fixed.
    Unwritable,
    Other,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Unavailable => "unavailable",
            Failure::Unwritable => "unwritable",
            Failure::Other => "other",
        }
    }
}

/// A batch that could not be committed.
#[derive(Debug, Clone)]
pub struct WriteFailed {
    pub kind: Failure,
    pub message: String,
}

impl WriteFailed {
    fn stopped() -> WriteFailed {
        WriteFailed {
            kind: Failure::Other,
            message: "usage-log writer stopped".to_owned(),
        }
    }
}

struct Job {
    row: UsageRow,
    /// Told whether the row was written as given (false: its grant had been used).
    done: Option<oneshot::Sender<Result<bool, WriteFailed>>>,
}

// Rows are nearly all the work: boxing them would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Work {
    Row(Job),
    /// A personal access token (id) was used at this time.
    Touch(String, i64),
    /// A refusal, counted with others of its kind.
    Refusal(UsageRow),
}

/// Most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// How long a small batch waits for company before committing.
const LINGER: Duration = Duration::from_micros(300);
/// Rows waiting at most; senders wait beyond that (back-pressure, never loss).
const QUEUE: usize = 16_384;
/// Pruning runs at most this often.
const PRUNE_EVERY: i64 = 10;
/// Refusals of one kind within this many seconds share a row.
pub const REFUSAL_INTERVAL: i64 = 60;
/// Kinds of refusal kept apart per interval; the rest share one row, so the log grows by at
/// most this many rows (plus one) a minute, whatever callers send.
pub const MAX_REFUSAL_KINDS: usize = 1000;

/// Folds refusals into rows: one per kind per interval, with a count.
#[derive(Default)]
struct Refusals {
    interval: i64,
    /// The kinds this interval has rows for (from this process).
    seen: HashSet<[u8; 16]>,
    /// This batch's rows by group, their counts summed.
    batch: HashMap<[u8; 16], UsageRow>,
}

impl Refusals {
    fn add(&mut self, mut row: UsageRow) {
        let interval = row.time.div_euclid(REFUSAL_INTERVAL);
        if interval != self.interval {
            self.interval = interval;
            self.seen.clear();
        }
        let mut kind = refusal_kind(&row);
        if !self.seen.contains(&kind) {
            if self.seen.len() >= MAX_REFUSAL_KINDS {
                kind = [0; 16];
                row = UsageRow {
                    time: row.time,
                    address: "*".to_owned(),
                    reason: Some(format!(
                        "Refusals of more than {MAX_REFUSAL_KINDS} kinds in one minute, counted together"
                    )),
                    ..UsageRow::default()
                };
            }
            self.seen.insert(kind);
        }
        self.batch
            .entry(kind)
            .and_modify(|r| r.count += 1)
            .or_insert_with(|| UsageRow {
                count: 1,
                refusal_group: Some(format!("{interval}:{}", hex(&kind))),
                ..row
            });
    }

    fn take(&mut self) -> Vec<UsageRow> {
        self.batch.drain().map(|(_, r)| r).collect()
    }
}

/// What makes two refusals one kind: the address, the key or token, the reason. Reasons may
/// echo a little of what the caller sent (an `alg`): the cap on kinds a minute bounds that.
fn refusal_kind(row: &UsageRow) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        Some(row.address.as_str()),
        row.key_id.as_deref(),
        row.pat_id.as_deref(),
        row.reason.as_deref(),
    ] {
        // Length-prefixed, so that no two different tuples hash the same bytes.
        let part = part.unwrap_or("\0");
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut kind = [0; 16];
    kind.copy_from_slice(&h.finalize()[..16]);
    // The all-zero kind is the overflow row's.
    kind[0] |= 1;
    kind
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::SyncSender<Work>,
}

impl UsageWriter {
    /// Starts the writer on its own store connection.
    pub fn start(
        mut store: Store,
        clock: Clock,
        retention: i64,
        metrics: Arc<Metrics>,
    ) -> (UsageWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel::<Work>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || {
                let mut last_prune = i64::MIN;
                let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
                let mut touches: Vec<(String, i64)> = Vec::new();
                let mut refusals = Refusals::default();
                while let Ok(first) = rx.recv() {
                    let mut work = Some(first);
                    // Let company arrive while asleep rather than being woken for each
                    // row: one wake-up per batch, not one per request.
                    let mut slept = false;
                    // Refusals and touches are folded, not rows: bound them too, or a flood
                    // of them would keep a batch from ever committing.
                    let mut taken = 0;
                    while let Some(w) = work.take() {
                        taken += 1;
                        match w {
                            Work::Row(j) => batch.push(j),
                            Work::Touch(id, time) => touches.push((id, time)),
                            Work::Refusal(row) => {
                                metrics.refusal_counted();
                                refusals.add(row);
                            }
                        }
                        if !slept {
                            std::thread::sleep(LINGER);
                            slept = true;
                        }
                        if batch.len() < MAX_BATCH && taken < 8 * MAX_BATCH {
                            work = rx.try_recv().ok();
                        }
                    }
                    let now = clock.now();
                    let prune =
                        (now.saturating_sub(last_prune) >= PRUNE_EVERY).then(|| now - retention);
                    let rows: Vec<UsageRow> = batch.iter().map(|j| j.row.clone()).collect();
                    let refused = refusals.take();
                    let started = Instant::now();
                    let result = store
                        .append_usage(&rows, &refused, &touches, now, prune)
                        .map_err(|e| WriteFailed {
                            kind: if e.is_unavailable() {
                                Failure::Unavailable
                            } else if e.is_unwritable() {
                                Failure::Unwritable
                            } else {
                                Failure::Other
                            },
                            message: e.to_string(),
                        });
                    match &result {
                        Ok(_) => metrics.usage_committed(rows.len() + refused.len(), started.elapsed()),
                        Err(e) => metrics.store_error(e.kind.name()),
                    }
                    touches.clear();
                    match &result {
                        Ok(_) if prune.is_some() => last_prune = now,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e.message, rows = rows.len(), "usage log write failed")
                        }
                    }
                    for (i, job) in batch.drain(..).enumerate() {
                        if let Some(done) = job.done {
                            let _ = done.send(match &result {
                                Ok(written) => Ok(written[i]),
                                Err(e) => Err(e.clone()),
                            });
                        }
                    }
                }
            })
            .expect("spawning the usage-log writer");
        (UsageWriter { tx }, handle)
    }

    /// Records a row and waits until it is committed. `Ok(false)`: the row's grant had been
    /// used before, by this process or another, and the row was recorded as a refusal.
    pub async fn record(&self, row: UsageRow) -> Result<bool, WriteFailed> {
        let (done, wait) = oneshot::channel();
        self.send(Work::Row(Job {
            row,
            done: Some(done),
        }))
        .await?;
        wait.await.map_err(|_| WriteFailed::stopped())?
    }

    /// Counts a refusal, without waiting for the commit: the first of its kind (address,
    /// key or token, reason) in a minute is written whole, the others add to its count.
    pub async fn record_refusal(&self, row: UsageRow) {
        let _ = self.send(Work::Refusal(row)).await;
    }

    /// Notes that a personal access token was used; dropped when the queue is full (last
    /// use is a hint, and the next minute brings another).
    pub fn touch(&self, pat_id: String, time: i64) {
        let _ = self.tx.try_send(Work::Touch(pat_id, time));
    }

    async fn send(&self, job: Work) -> Result<(), WriteFailed> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(job)) => {
                // Queue full: wait off the async workers rather than drop the row.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(job).map_err(|_| ()))
                    .await
                    .map_err(|_| WriteFailed::stopped())?
                    .map_err(|()| WriteFailed::stopped())
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(WriteFailed::stopped()),
        }
    }
}
