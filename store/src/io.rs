//! The store's window on the file system. Everything the store reads or
//! writes goes through [`Dir`] and [`LogFile`], so tests can swap in
//! [`FaultyDir`] and fail any write or fsync, or lose unsynced data as a
//! power cut would, deterministically.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A directory of store files.
pub trait Dir: Send + Sync + std::fmt::Debug + 'static {
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Creates a new, empty file; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, removals and renames durable.
    fn sync(&self) -> io::Result<()>;
    /// Where the directory is, for messages.
    fn path(&self) -> &Path;
}

/// One file of the store, read and written at explicit offsets.
#[allow(clippy::len_without_is_empty)] // a file length, not a collection
pub trait LogFile: Send + Sync + std::fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Cuts or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with UnexpectedEof.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Name of the file whose lock marks a directory as in use by one store.
pub const LOCK_FILE: &str = "LOCK";

/// The real file system.
#[derive(Debug)]
pub struct OsDir {
    path: PathBuf,
    /// Holds an exclusive lock on `LOCK` for as long as the directory is
    /// open, so a second process (or a second store in this one) cannot
    /// append to the same log. The kernel drops it if the process dies.
    _lock: File,
}

impl OsDir {
    /// Uses `path` as the store directory, creating it if needed, and locks
    /// it. Fails with `WouldBlock` if another store holds the lock.
    pub fn new(path: impl AsRef<Path>) -> io::Result<OsDir> {
        std::fs::create_dir_all(path.as_ref())?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.as_ref().join(LOCK_FILE))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(OsDir { path: path.as_ref().to_path_buf(), _lock: lock })
    }
}

impl Dir for OsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let f = OpenOptions::new().read(true).write(true).open(self.path.join(name))?;
        Ok(Arc::new(OsFile(f)))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(self.path.join(name))?;
        Ok(Arc::new(OsFile(f)))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }
    fn sync(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct OsFile(File);

impl LogFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// A [`Dir`] over a real directory that fails on command.
///
/// Counts every write and fsync. [`FaultyDir::fail_write_at`] makes the n-th
/// write from now write only part of its bytes and fail, after which every
/// call fails, as if the process had died mid-write. [`FaultyDir::fail_sync_at`]
/// makes the n-th fsync fail. [`FaultyDir::power_cut`] then throws away what
/// was never made durable: each file shrinks to its last synced length and
/// files whose creation was never synced into the directory disappear.
#[derive(Debug, Clone)]
pub struct FaultyDir {
    inner: Arc<OsDir>,
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Writes left before the failing one; u64::MAX when none is planned.
    writes_left: AtomicU64,
    /// Fsyncs left before the failing one; u64::MAX when none is planned.
    syncs_left: AtomicU64,
    /// Set once a planned write failure has struck: the "process" is dead.
    crashed: AtomicBool,
    /// Per file: bytes known durable, and whether its creation is durable.
    durable: Mutex<HashMap<String, Durable>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    synced_len: u64,
    name_synced: bool,
}

impl FaultyDir {
    /// Wraps the directory at `path`, creating it if needed. Files already
    /// there count as durable.
    pub fn new(path: impl AsRef<Path>) -> io::Result<FaultyDir> {
        let inner = Arc::new(OsDir::new(path)?);
        let state = Arc::new(FaultState {
            writes_left: AtomicU64::new(u64::MAX),
            syncs_left: AtomicU64::new(u64::MAX),
            ..FaultState::default()
        });
        let dir = FaultyDir { inner, state };
        dir.mark_all_durable()?;
        Ok(dir)
    }

    /// The `n`-th write from now (0 = the next) tears and fails.
    pub fn fail_write_at(&self, n: u64) {
        self.state.writes_left.store(n, Ordering::SeqCst);
    }

    /// The `n`-th fsync from now (0 = the next) fails.
    pub fn fail_sync_at(&self, n: u64) {
        self.state.syncs_left.store(n, Ordering::SeqCst);
    }

    /// The process dies now: every later call fails, so nothing more reaches
    /// the files (a store dropped afterwards cannot flush or checkpoint).
    pub fn crash_now(&self) {
        self.state.crashed.store(true, Ordering::SeqCst);
    }

    /// Whether a planned write failure has struck.
    pub fn crashed(&self) -> bool {
        self.state.crashed.load(Ordering::SeqCst)
    }

    /// Loses everything not made durable, clears planned faults, and lets
    /// calls succeed again: the machine came back up.
    pub fn power_cut(&self) -> io::Result<()> {
        let durable = self.state.durable.lock().clone();
        for name in self.inner.list()? {
            match durable.get(&name) {
                Some(d) if d.name_synced => {
                    let f = OpenOptions::new().write(true).open(self.inner.path.join(&name))?;
                    if f.metadata()?.len() > d.synced_len {
                        f.set_len(d.synced_len)?;
                    }
                }
                _ => std::fs::remove_file(self.inner.path.join(&name))?,
            }
        }
        self.reset()
    }

    /// Clears planned faults and the crashed state, keeping file contents:
    /// the process died but the operating system kept its page cache.
    pub fn reset(&self) -> io::Result<()> {
        self.state.writes_left.store(u64::MAX, Ordering::SeqCst);
        self.state.syncs_left.store(u64::MAX, Ordering::SeqCst);
        self.state.crashed.store(false, Ordering::SeqCst);
        self.mark_all_durable()
    }

    fn mark_all_durable(&self) -> io::Result<()> {
        let mut durable = self.state.durable.lock();
        durable.clear();
        for name in self.inner.list()? {
            let len = std::fs::metadata(self.inner.path.join(&name))?.len();
            durable.insert(name, Durable { synced_len: len, name_synced: true });
        }
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed() { Err(io::Error::other("injected crash: the process is dead")) } else { Ok(()) }
    }
}

/// Counts down `left`; true when this call is the one planned to fail.
fn strikes(left: &AtomicU64) -> bool {
    let mut cur = left.load(Ordering::SeqCst);
    loop {
        if cur == u64::MAX {
            return false;
        }
        let next = if cur == 0 { u64::MAX } else { cur - 1 };
        match left.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return cur == 0,
            Err(actual) => cur = actual,
        }
    }
}

impl Dir for FaultyDir {
    fn list(&self) -> io::Result<Vec<String>> {
        self.check_alive()?;
        self.inner.list()
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        self.check_alive()?;
        let inner = self.inner.open(name)?;
        Ok(Arc::new(FaultyFile { inner, name: name.to_owned(), dir: self.clone() }))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        self.check_alive()?;
        let inner = self.inner.create(name)?;
        self.state.durable.lock().insert(name.to_owned(), Durable::default());
        Ok(Arc::new(FaultyFile { inner, name: name.to_owned(), dir: self.clone() }))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.check_alive()?;
        // A removal that was never synced may be undone by a power cut; the
        // store must cope with either, so model the harsher case only when
        // the file's contents were durable: keep it in the durable map.
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check_alive()?;
        self.inner.rename(from, to)?;
        let mut durable = self.state.durable.lock();
        let moved = durable.remove(from).unwrap_or_default();
        // Until the directory is synced the new name is not durable.
        durable.insert(to.to_owned(), Durable { name_synced: false, ..moved });
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.check_alive()?;
        if strikes(&self.state.syncs_left) {
            return Err(io::Error::other("injected fsync failure (directory)"));
        }
        self.inner.sync()?;
        for d in self.state.durable.lock().values_mut() {
            d.name_synced = true;
        }
        Ok(())
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn LogFile>,
    name: String,
    dir: FaultyDir,
}

impl LogFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.dir.check_alive()?;
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.dir.check_alive()?;
        if strikes(&self.dir.state.writes_left) {
            // Tear the write: a prefix reaches the file, the rest never does.
            let torn = buf.len() / 2;
            self.inner.write_all_at(&buf[..torn], offset)?;
            self.dir.state.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other("injected crash during write"));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.dir.check_alive()?;
        if strikes(&self.dir.state.syncs_left) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        if let Some(d) = self.dir.state.durable.lock().get_mut(&self.name) {
            d.synced_len = len;
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.dir.check_alive()?;
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.dir.check_alive()?;
        self.inner.set_len(len)?;
        if let Some(d) = self.dir.state.durable.lock().get_mut(&self.name) {
            // Shrinking is durable only once synced; be conservative and
            // assume a cut file may come back no longer than it is now.
            d.synced_len = d.synced_len.min(len);
        }
        Ok(())
    }
}
