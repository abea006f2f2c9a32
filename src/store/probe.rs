//! A cheap "has anyone committed?" test: the WAL-index header in the store's `-shm` file.
//!
//! `PRAGMA data_version` opens a read transaction, which takes and drops a POSIX lock on the
//! `-shm` file: two `fcntl` calls per check, a twelfth of the server's time on `GET /auth`.
//! Every commit rewrites the WAL-index header (its `iChange` counts transactions), and it is
//! in shared memory, so reading it is one `pread`. The header is kept twice, written second
//! copy first; a read that finds the copies differ caught a writer mid-way
//! (<https://www.sqlite.org/walformat.html>, "The WAL-Index Header").

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes of one copy of the header.
const HEADER: usize = 48;

#[derive(Debug, Clone, Copy)]
pub struct ChangeProbe {
    file: &'static File,
}

/// The `-shm` files this process has opened for probes. They are never closed: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's own locks
/// on `-shm` included, which other processes rely on.
static OPENED: Mutex<Vec<(PathBuf, &'static File)>> = Mutex::new(Vec::new());

impl ChangeProbe {
    /// The probe of the store at `db`, or None when it has no `-shm` file (not in WAL mode,
    /// or no connection has read it yet): the caller then always asks SQLite.
    pub fn open(db: &Path) -> Option<ChangeProbe> {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        let shm = PathBuf::from(shm);
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, file)) = opened.iter().find(|(p, _)| *p == shm) {
            return Some(ChangeProbe { file });
        }
        let file: &'static File = Box::leak(Box::new(File::open(&shm).ok()?));
        opened.push((shm, file));
        Some(ChangeProbe { file })
    }

    /// The current header, or None while a writer is rewriting it or it cannot be read.
    /// Equal headers at two times mean no commit finished in between.
    pub fn header(&self) -> Option<[u8; HEADER]> {
        let mut both = [0u8; 2 * HEADER];
        self.file.read_exact_at(&mut both, 0).ok()?;
        let (first, second) = both.split_at(HEADER);
        (first == second).then(|| first.try_into().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn every_commit_changes_the_header_and_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let mut writer = Store::open(&db).unwrap();
        let reader = Store::open(&db).unwrap();
        reader.data_version().unwrap();
        let probe = ChangeProbe::open(&db).expect("a WAL store has a -shm file");
        let before = probe.header().unwrap();
        reader.data_version().unwrap();
        reader.feed_head().unwrap();
        assert_eq!(probe.header(), Some(before), "reads leave the header alone");
        let secret = crate::secret::Secret::generate(&mut rand::thread_rng());
        writer.add_user("a", &secret, 1).unwrap();
        let after = probe.header().unwrap();
        assert_ne!(after, before, "a commit rewrites the header");
        writer.add_user("b", &secret, 1).unwrap();
        assert_ne!(probe.header().unwrap(), after, "and so does the next");
        // Opening the probe again reuses the descriptor (it must never be closed).
        assert!(std::ptr::eq(
            ChangeProbe::open(&db).unwrap().file,
            probe.file
        ));
    }
}
