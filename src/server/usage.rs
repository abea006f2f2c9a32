//! The usage-log writer: one thread, one transaction per batch of rows (group commit); a
//! request waiting for its row is answered only once the batch holding it has committed.
//! It also records when personal access tokens were last used, in the same batches.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::server::metrics::Metrics;
use crate::store::{Store, UsageRow};

/// A batch that could not be committed.
#[derive(Debug, Clone)]
pub struct WriteFailed {
    /// The store is out of reach (PostgreSQL down): answered 503, worth a retry.
    pub unavailable: bool,
    pub message: String,
}

impl WriteFailed {
    fn stopped() -> WriteFailed {
        WriteFailed {
            unavailable: false,
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
}

/// Most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// How long a small batch waits for company before committing.
const LINGER: Duration = Duration::from_micros(300);
/// Rows waiting at most; senders wait beyond that (back-pressure, never loss).
const QUEUE: usize = 16_384;
/// Pruning runs at most this often.
const PRUNE_EVERY: i64 = 10;

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
                while let Ok(first) = rx.recv() {
                    let mut work = Some(first);
                    // Let company arrive while asleep rather than being woken for each
                    // row: one wake-up per batch, not one per request.
                    let mut slept = false;
                    while let Some(w) = work.take() {
                        match w {
                            Work::Row(j) => batch.push(j),
                            Work::Touch(id, time) => touches.push((id, time)),
                        }
                        if !slept {
                            std::thread::sleep(LINGER);
                            slept = true;
                        }
                        if batch.len() < MAX_BATCH {
                            work = rx.try_recv().ok();
                        }
                    }
                    let now = clock.now();
                    let prune =
                        (now.saturating_sub(last_prune) >= PRUNE_EVERY).then(|| now - retention);
                    let rows: Vec<UsageRow> = batch.iter().map(|j| j.row.clone()).collect();
                    let started = Instant::now();
                    let result = store
                        .append_usage(&rows, &touches, now, prune)
                        .map_err(|e| WriteFailed {
                            unavailable: e.is_unavailable(),
                            message: e.to_string(),
                        });
                    if result.is_ok() {
                        metrics.usage_committed(rows.len(), started.elapsed());
                    } else {
                        metrics.store_error();
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

    /// Records a row without waiting for the commit (refused attempts).
    pub async fn record_later(&self, row: UsageRow) {
        let _ = self.send(Work::Row(Job { row, done: None })).await;
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
