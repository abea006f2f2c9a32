//! The usage-log writer: one thread, one transaction per batch of rows (group commit); a
//! request waiting for its row is answered only once the batch holding it has committed.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::store::{Store, UsageRow};

struct Job {
    row: UsageRow,
    /// Told whether the row was written as given (false: its grant had been used).
    done: Option<oneshot::Sender<Result<bool, String>>>,
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
    tx: mpsc::SyncSender<Job>,
}

impl UsageWriter {
    /// Starts the writer on its own store connection.
    pub fn start(mut store: Store, clock: Clock, retention: i64) -> (UsageWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || {
                let mut last_prune = i64::MIN;
                let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    // Let company arrive while asleep rather than being woken for each
                    // row: one wake-up per batch, not one per request.
                    std::thread::sleep(LINGER);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let now = clock.now();
                    let prune =
                        (now.saturating_sub(last_prune) >= PRUNE_EVERY).then(|| now - retention);
                    let rows: Vec<UsageRow> = batch.iter().map(|j| j.row.clone()).collect();
                    let result = store
                        .append_usage(&rows, now, prune)
                        .map_err(|e| e.to_string());
                    match &result {
                        Ok(_) if prune.is_some() => last_prune = now,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, rows = rows.len(), "usage log write failed")
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
    pub async fn record(&self, row: UsageRow) -> Result<bool, String> {
        let (done, wait) = oneshot::channel();
        self.send(Job {
            row,
            done: Some(done),
        })
        .await?;
        wait.await
            .map_err(|_| "usage-log writer stopped".to_owned())?
    }

    /// Records a row without waiting for the commit (refused attempts).
    pub async fn record_later(&self, row: UsageRow) {
        let _ = self.send(Job { row, done: None }).await;
    }

    async fn send(&self, job: Job) -> Result<(), String> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(job)) => {
                // Queue full: wait off the async workers rather than drop the row.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(job).map_err(|_| ()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|()| "usage-log writer stopped".to_owned())
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err("usage-log writer stopped".to_owned()),
        }
    }
}
