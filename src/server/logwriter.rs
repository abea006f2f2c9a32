//! Where `serve`'s log lines go: appended to a shared buffer that a writer thread empties
//! into stderr every few milliseconds. A request thread never waits on the terminal or the
//! journal, and never wakes another thread per line (a channel per line cost a futex wake
//! and two context switches per request).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the buffer is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Bytes held at most; lines beyond are dropped (and counted) rather than memory grown or
/// requests slowed when stderr blocks.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writer thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread.
pub fn stderr() -> (BufferedStderr, Guard) {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run(&shared))
            .ok()
    };
    (
        BufferedStderr {
            shared: shared.clone(),
        },
        Guard { shared, thread },
    )
}

fn run(shared: &Shared) {
    let mut out = Vec::new();
    loop {
        let closed = {
            let guard = shared.buffer.lock().unwrap_or_else(|p| p.into_inner());
            let (mut b, _) = shared
                .wake
                .wait_timeout_while(guard, FLUSH_EVERY, |b| !b.closed)
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut out, &mut b.bytes);
            if b.dropped > 0 {
                let note = format!(
                    "tokenauth: {} log lines dropped: stderr did not keep up\n",
                    b.dropped
                );
                out.extend_from_slice(note.as_bytes());
                b.dropped = 0;
            }
            b.closed
        };
        if !out.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&out);
            let _ = err.flush();
            out.clear();
        }
        if closed {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One log line's writer: tracing-subscriber formats the line first and writes it whole.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut b = self.shared.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if b.closed {
            // The writer thread is gone (the server is stopping): write it out directly.
            drop(b);
            return std::io::stderr().write(buf);
        }
        if b.bytes.len() + buf.len() > MAX_BUFFERED {
            b.dropped += 1;
        } else {
            b.bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_in_order_and_an_overflow_is_counted_not_grown() {
        let shared = Shared::default();
        let mut w = LineWriter { shared: &shared };
        w.write_all(b"one\n").unwrap();
        w.write_all(b"two\n").unwrap();
        assert_eq!(shared.buffer.lock().unwrap().bytes, b"one\ntwo\n");
        let big = vec![b'x'; MAX_BUFFERED];
        w.write_all(&big).unwrap();
        let b = shared.buffer.lock().unwrap();
        assert_eq!(b.bytes.len(), 8);
        assert_eq!(b.dropped, 1);
    }
}
