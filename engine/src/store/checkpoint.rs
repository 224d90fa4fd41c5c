//! The SQLite WAL checkpointer: a thread of its own that copies the WAL back into the database
//! file after commits and keeps the WAL file under its limit.
//!
//! A checkpoint syncs the database file, which would stall the writer for milliseconds, so the
//! writer never checkpoints (`wal_autocheckpoint=0`) and tells this thread about its commits.
//! At most every [`INTERVAL`] while commits come, a PASSIVE checkpoint copies what the readers
//! no longer need, without waiting for anyone.
//!
//! Passive checkpoints alone do not bound the WAL: SQLite starts the WAL over only when a write
//! transaction begins while every frame has been copied and no reader still uses one, and the
//! writer appends while a passive checkpoint copies, so under continuous publishing that moment
//! never comes and the file grows for ever. So once the WAL file passes a quarter of its limit,
//! a RESTART checkpoint follows the passive one: it holds new writes off (briefly: the passive
//! checkpoint just copied nearly everything), copies the rest, waits for the readers still on
//! old frames and lets the next commit write the WAL from its start again. The writer's
//! `journal_size_limit` cuts a longer file back to that quarter then. After [`IDLE`] without
//! commits, a TRUNCATE checkpoint empties the file.
//!
//! When the writer appends faster than this thread checkpoints, the writer pushes back: after a
//! commit that leaves the WAL file over half its limit, it runs the RESTART checkpoint itself
//! before it takes more work ([`Checkpointer::committed`]). So the WAL stays under its limit
//! as long as no single transaction writes more than half of it.
//!
//! Hazards: while a RESTART or TRUNCATE checkpoint waits for readers, the writer waits too; the
//! thread's checkpoint gives up after about 100 ms ([`busy::wait_briefly`]) and is tried again after the next commits;
//! the writer's waits as long as its busy timeout. A reader that keeps one transaction open for
//! longer than that lets the WAL grow past its limit, which is logged as a warning once per
//! crossing. The store's own reads are single statements.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::conn::busy;
use crate::error::{Error, Result};

/// How often, at most, the WAL is checkpointed while the writer commits.
const INTERVAL: Duration = Duration::from_millis(20);

/// How long without commits before the WAL file is truncated to nothing.
const IDLE: Duration = Duration::from_secs(1);

/// How long the writer, once the WAL passed half its limit, retries starting it over while the
/// thread's checkpoint is in the way.
const PUSH_BACK_WAIT: Duration = Duration::from_secs(1);

/// Returns the path of the WAL file of the SQLite database at `db`.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Returns the size of the WAL file above which a checkpoint starts the WAL over, for a limit.
pub(crate) fn restart_size(limit: u64) -> u64 {
    limit / 4
}

/// The writer's side of the checkpointer thread; the thread ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    commits: SyncSender<()>,
    wal: PathBuf,
    /// Past this WAL file size the writer checkpoints itself (half the limit).
    push_back: u64,
}

impl Checkpointer {
    /// Starts the thread for the database at `path`, keeping its WAL under `wal_limit` bytes.
    pub(crate) fn spawn(path: PathBuf, wal_limit: u64) -> Result<Self> {
        let (commits, rx) = std::sync::mpsc::sync_channel(1);
        let wal = wal_path(&path);
        let thread = Thread { db: path, wal: wal.clone(), wal_limit, conn: None, over: false };
        std::thread::Builder::new()
            .name(super::CHECKPOINT_THREAD.into())
            .spawn(move || thread.run(&rx))
            .map_err(|e| Error::Internal(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { commits, wal, push_back: wal_limit / 2 })
    }

    /// Tells the thread about a commit of `conn` (the writer's, outside a transaction); if the
    /// thread falls behind, starts the WAL over on `conn` first, holding the writer back.
    pub(crate) fn committed(&self, conn: &Connection) {
        if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > self.push_back) {
            self.restart(conn);
        }
        // A full channel: a checkpoint is pending already.
        let _ = self.commits.try_send(());
    }

    /// Runs a RESTART checkpoint on the writer's connection, each try waiting at most
    /// about 100 ms ([`busy::wait_briefly`]) for readers, retrying while the thread's own checkpoint or readers are in
    /// the way, for at most [`PUSH_BACK_WAIT`] in all.
    fn restart(&self, conn: &Connection) {
        let deadline = Instant::now() + PUSH_BACK_WAIT;
        if let Err(e) = conn.busy_handler(Some(busy::wait_briefly)) {
            tracing::warn!(error = %e, "setting the writer's busy handler");
            return;
        }
        loop {
            match conn.query_row(Mode::Restart.pragma(), [], |r| r.get::<_, i64>(0)) {
                Ok(0) => break,
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => {
                    tracing::debug!(path = %self.wal.display(), "the writer could not start the WAL over in time");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.wal.display(), "the writer checkpointing the WAL");
                    break;
                }
            }
        }
        if let Err(e) = conn.busy_handler(Some(busy::wait_long)) {
            tracing::warn!(error = %e, "restoring the writer's busy handler");
        }
    }
}

/// The kinds of checkpoint this thread runs (SQLite's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Passive,
    Restart,
    Truncate,
}

impl Mode {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Self::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Self::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
}

struct Thread {
    db: PathBuf,
    wal: PathBuf,
    wal_limit: u64,
    /// Opened on first use and again after an error.
    conn: Option<Connection>,
    /// The WAL file was over its limit at the last look (warned once per crossing).
    over: bool,
}

impl Thread {
    fn run(mut self, commits: &Receiver<()>) {
        // Whether the WAL was emptied since the last commit: then wait for the next one.
        let mut emptied = true;
        loop {
            let next = if emptied {
                commits.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                commits.recv_timeout(IDLE)
            };
            match next {
                Ok(()) => {
                    emptied = false;
                    // Commits in the meantime are covered by this checkpoint.
                    std::thread::sleep(INTERVAL);
                    let _ = commits.try_recv();
                    self.checkpoint(Mode::Passive);
                    if self.wal_size() > restart_size(self.wal_limit) {
                        self.checkpoint(Mode::Restart);
                    }
                }
                Err(RecvTimeoutError::Timeout) => emptied = self.checkpoint(Mode::Truncate),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.watch_limit();
        }
    }

    /// Runs one checkpoint; returns whether it copied every frame (and, for RESTART and
    /// TRUNCATE, got every reader off the WAL). Errors are logged and retried next time.
    fn checkpoint(&mut self, mode: Mode) -> bool {
        let Some(conn) = self.connection() else { return false };
        // (busy, frames in the WAL, frames copied); busy: a reader or writer was in the way.
        match conn.query_row(mode.pragma(), [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
        {
            Ok((busy, log, copied)) => {
                if busy != 0 && mode != Mode::Passive {
                    tracing::debug!(
                        ?mode,
                        log,
                        copied,
                        "checkpoint gave way to readers; retrying after the next commits"
                    );
                }
                busy == 0 && log == copied
            }
            Err(e) => {
                tracing::warn!(error = %e, ?mode, path = %self.db.display(), "checkpointing the WAL");
                self.conn = None;
                false
            }
        }
    }

    fn connection(&mut self) -> Option<&Connection> {
        if self.conn.is_none() {
            self.conn = Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .and_then(|c| {
                    // Bounds how long RESTART and TRUNCATE hold the writer off (PASSIVE never waits).
                    c.busy_handler(Some(busy::wait_briefly))?;
                    // It syncs the WAL before and the database file after copying (no more).
                    c.execute_batch("PRAGMA synchronous=NORMAL")?;
                    Ok(c)
                })
                .inspect_err(
                    |e| tracing::warn!(error = %e, path = %self.db.display(), "opening the checkpoint connection"),
                )
                .ok();
        }
        self.conn.as_ref()
    }

    fn wal_size(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// Warns once when the WAL file passes its limit, and notes when it is back under.
    fn watch_limit(&mut self) {
        let size = self.wal_size();
        let over = size > self.wal_limit;
        if over && !self.over {
            tracing::warn!(
                wal_bytes = size,
                limit_bytes = self.wal_limit,
                path = %self.wal.display(),
                "the SQLite WAL passed its limit: a reader holds a transaction open for long"
            );
        } else if !over && self.over {
            tracing::info!(wal_bytes = size, limit_bytes = self.wal_limit, "the SQLite WAL is back under its limit");
        }
        self.over = over;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_file_sits_beside_the_database() {
        assert_eq!(wal_path(Path::new("/data/eventbus.db")), PathBuf::from("/data/eventbus.db-wal"));
        assert_eq!(restart_size(64 << 20), 16 << 20);
    }
}
