//! A lake in a local directory.
//!
//! Writes go to a temporary file in the same directory, are fsynced, then move into place:
//! `rename` for a plain put (atomic replace), `link` for put-if-absent (atomic, and fails if
//! the name exists — `O_EXCL` semantics without the risk of a half-written commit record
//! that `open(O_CREAT|O_EXCL)` followed by a write would leave after a crash). A commit's data
//! files skip the fsyncs ([`LocalStore::put_unsynced`]) and are made durable together by one
//! `syncfs` before the commit ([`LocalStore::sync_written`]), where Linux reports its errors.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{ObjectMeta, StoreError};
use crate::direct_io;

/// Objects from this size on are written around the page cache (see [`direct_io`]): the
/// lake's data files, which are made durable before their commit and not read back by the writer.
/// Smaller ones (commit records, checkpoints of small tables, quarantine files) are read back
/// soon, and a direct write of a few blocks saves nothing.
const DIRECT_MIN: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// The root, opened before the first unsynced put and kept open: `syncfs` reports the
    /// write-back errors the file system had since the descriptor it is given was opened (and
    /// since its last report), so a descriptor opened at the sync would miss a failure of a
    /// write-back that happened before it.
    sync_root: std::sync::Arc<std::sync::OnceLock<File>>,
}

/// Makes temporary names unique within a process; the pid makes them unique across.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How old a temporary file of a process this machine does not know may get before it is
/// taken for a leftover: far longer than any one write.
pub(super) const TEMP_STALE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How old a temporary file whose process does not run here must be before it is taken for a
/// leftover.
pub(super) const TEMP_ORPHANED: std::time::Duration = std::time::Duration::from_secs(600);

/// The writing process of a temporary file `.NAME.PID.N.tmp`.
fn temp_file_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let (_counter, pid, rest) = (parts.next()?.parse::<u64>().ok()?, parts.next()?, parts.next()?);
    (!rest.is_empty()).then(|| pid.parse().ok()).flatten()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Makes `dir` and the directories above it that are missing, each durably: a new directory's
/// name is in its parent, which is fsynced after it is made (the files put into `dir` fsync
/// `dir` itself). Without that, a power loss could take a new partition's directory, and the
/// files a commit names in it, away on file systems that do not order metadata (ext4 does).
fn make_dirs(dir: &Path, sync: bool) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(io(at)(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file is where a directory must be"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(at),
            Err(e) => return Err(io(at)(e)),
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            // (Made by another writer meanwhile: synced here too, as this put may end first.)
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(dir)(e)),
        }
        if let Some(parent) = dir.parent().filter(|p| sync && !p.as_os_str().is_empty()) {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
        }
    }
    Ok(())
}

/// Moves `from` to `to` unless `to` exists (then [`std::io::ErrorKind::AlreadyExists`]):
/// `renameat2(RENAME_NOREPLACE)` on Linux; where the file system does not take that flag, a
/// hard link (which fails if the name exists), then `from` removed.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    match rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::hard_link(from, to)?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// True where one `syncfs(2)` makes a batch of unsynced puts durable and says if it could not:
/// Linux from 5.8 on. Before 5.8 `syncfs` did not report write-back errors (a failing disk
/// would go unnoticed and the commit be made over lost data), and other systems have no
/// `syncfs`: there each put is fsynced on its own, with its directory, as [`LocalStore::put`]
/// does.
fn syncfs_reports_errors() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            let release = rustix::system::uname().release().to_string_lossy().into_owned();
            kernel_at_least(&release, (5, 8))
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// True if a kernel release such as `6.18.44-fc-v782` or `5.8.0` is `least` or later.
fn kernel_at_least(release: &str, least: (u32, u32)) -> bool {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= least,
        _ => false,
    }
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into(), sync_root: Default::default() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Writes and fsyncs a temporary file beside `target`.
    fn write_temp(&self, target: &Path, data: &[u8]) -> Result<PathBuf, StoreError> {
        self.write_temp_with(target, data, true)
    }

    /// Writes a temporary file beside `target`, fsynced if `sync`.
    fn write_temp_with(&self, target: &Path, data: &[u8], sync: bool) -> Result<PathBuf, StoreError> {
        let dir = target.parent().expect("object paths have a parent");
        let name = target.file_name().expect("object paths have a name").to_string_lossy();
        let temp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
        // The directory is made when the file cannot be created for want of it: once per
        // partition, not a failing `mkdir` before every file (8,925 of them for 11,659 files by
        // hour). A delete that empties a directory removes it (see `delete`): if that happens
        // between making the directory and the file, it is made again.
        let mut attempts = 0;
        let direct = data.len() >= DIRECT_MIN;
        let file = loop {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            let opened = if direct {
                match direct_io::open_direct(&mut options, &temp) {
                    Err(e) if direct_io::is_unsupported(&e) => File::create(&temp),
                    other => other,
                }
            } else {
                options.open(&temp)
            };
            match opened {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    make_dirs(dir, sync)?;
                }
                other => break other.map_err(io(&temp))?,
            }
        };
        let synced = |file: &File| if sync { file.sync_all() } else { Ok(()) };
        let written = match direct {
            true => match direct_io::write_all_direct(&file, data) {
                // Opened direct, but the file system refuses direct writes: write it again
                // the ordinary way.
                Err(e) if direct_io::is_unsupported(&e) => File::create(&temp).and_then(|mut file| file.write_all(data).and_then(|()| synced(&file))),
                other => other.and_then(|()| synced(&file)),
            },
            false => (&file).write_all(data).and_then(|()| synced(&file)),
        };
        if let Err(e) = written {
            // A full disk, say: the part written must not stay behind (the write is retried
            // or the run fails; either way this name is not used again).
            drop(file);
            let _ = std::fs::remove_file(&temp);
            return Err(io(&temp)(e));
        }
        Ok(temp)
    }

    fn sync_parent(target: &Path) -> Result<(), StoreError> {
        let dir = target.parent().expect("object paths have a parent");
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    pub fn put(&self, path: &str, data: &Bytes) -> Result<(), StoreError> {
        self.put_with(path, data, true)
    }

    /// A put through a temporary file renamed into place; the file and its directory fsynced
    /// if `sync`.
    fn put_with(&self, path: &str, data: &Bytes, sync: bool) -> Result<(), StoreError> {
        let target = self.full(path);
        let temp = self.write_temp_with(&target, data, sync)?;
        if let Err(e) = std::fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            return Err(io(&target)(e));
        }
        if sync { Self::sync_parent(&target) } else { Ok(()) }
    }

    /// Like [`LocalStore::put`], but nothing is fsynced (neither the file, nor its directory,
    /// nor a directory it makes): the caller makes a batch of such puts durable at once with
    /// [`LocalStore::sync_written`] before anything depends on them (the commit that names
    /// them). Until then a power loss may lose them, or leave a name with less than the data; a
    /// killed process cannot (the page cache outlives it).
    ///
    /// Where one `syncfs` cannot make them durable (see [`syncfs_reports_errors`]) this is a
    /// plain put, durable when it returns, and `sync_written` has nothing left to do.
    pub fn put_unsynced(&self, path: &str, data: &Bytes) -> Result<(), StoreError> {
        if !syncfs_reports_errors() {
            return self.put(path, data);
        }
        if self.sync_root.get().is_none() {
            std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
            let _ = self.sync_root.set(File::open(&self.root).map_err(io(&self.root))?);
        }
        self.put_with(path, data, false)
    }

    /// Makes what [`LocalStore::put_unsynced`] put durable, data and names: one `syncfs(2)` of
    /// the file system the lake's root is on (the lake must not span file systems: a mount
    /// inside it is not synced). A write-back error on that file system since the first
    /// unsynced put (a failing disk) is this call's error, and the commit that would have named
    /// them is not made.
    pub fn sync_written(&self) -> Result<(), StoreError> {
        // (Without an unsynced put there is nothing to sync; elsewhere than Linux ≥ 5.8 they
        // were synced one by one.)
        let Some(_root) = self.sync_root.get() else { return Ok(()) };
        #[cfg(target_os = "linux")]
        rustix::fs::syncfs(_root).map_err(|e| io(&self.root)(e.into()))?;
        Ok(())
    }

    /// Deletes the temporary files (`.NAME.PID.N.tmp`) under `prefix` that writes cut off
    /// left behind: a process killed mid-write, or one from before writes cleaned up after
    /// themselves. One is stale when no process of that id runs here and it is older than
    /// [`TEMP_ORPHANED`] (no write takes that long; and a pid not seen here may be a running
    /// process of another container or machine sharing the directory), or when it is older than
    /// [`TEMP_STALE`] whatever its process. Returns how many were deleted.
    pub fn remove_stale_temporary(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut stack = vec![self.full(prefix.trim_end_matches('/'))];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Io { path: dir, source: e }),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(metadata) = entry.metadata() else { continue };
                if metadata.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(pid) = temp_file_pid(&name) else { continue };
                let age = metadata.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
                let own = pid == std::process::id();
                let orphaned = age > TEMP_ORPHANED && !Path::new(&format!("/proc/{pid}")).exists();
                if !own && (orphaned || age > TEMP_STALE) {
                    tracing::info!(file = %path.display(), "removing a temporary file a write that was cut off left");
                    match std::fs::remove_file(&path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::Io { path, source: e }),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Creates `path` with `data` only if nothing is there, like [`LocalStore::put_if_absent`],
    /// for a commit's data files: not fsynced (as [`LocalStore::put_unsynced`]), and moved into
    /// place by a rename that refuses to replace (`renameat2(RENAME_NOREPLACE)`), which costs
    /// what a plain put's rename does. A writer that lost its shard may still be storing the
    /// same name: it must not replace a file another writer committed.
    pub fn put_new_unsynced(&self, path: &str, data: &Bytes) -> Result<(), StoreError> {
        let sync = !syncfs_reports_errors();
        if !sync && self.sync_root.get().is_none() {
            std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
            let _ = self.sync_root.set(File::open(&self.root).map_err(io(&self.root))?);
        }
        let target = self.full(path);
        let temp = self.write_temp_with(&target, data, sync)?;
        match rename_no_replace(&temp, &target) {
            Ok(()) if sync => Self::sync_parent(&target),
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists { path: path.to_string() }),
                    _ => Err(io(&target)(e)),
                }
            }
        }
    }

    pub fn put_if_absent(&self, path: &str, data: &Bytes) -> Result<(), StoreError> {
        let target = self.full(path);
        let temp = self.write_temp(&target, data)?;
        let linked = std::fs::hard_link(&temp, &target);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Self::sync_parent(&target),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists { path: path.to_string() }),
            Err(e) => Err(StoreError::Io { path: target, source: e }),
        }
    }

    pub fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let target = self.full(path);
        match std::fs::read(&target) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound { path: path.to_string() }),
            Err(e) => Err(StoreError::Io { path: target, source: e }),
        }
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // List from the deepest existing directory the prefix names, then filter by prefix.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = self.full(dir_part);
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Io { path: dir, source: e }),
            };
            for entry in entries {
                let entry = entry.map_err(io(&dir))?;
                let path = entry.path();
                // An object deleted between the directory's read and its stat (another
                // process's writer record, say) is simply not listed, as S3 would not list it.
                let file_type = match entry.file_type() {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    other => other.map_err(io(&path))?,
                };
                if file_type.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue; // temporary files of writes in progress
                }
                let relative = path.strip_prefix(&self.root).expect("under the root").to_string_lossy().replace('\\', "/");
                if relative.starts_with(prefix) {
                    let metadata = match entry.metadata() {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        other => other.map_err(io(&path))?,
                    };
                    let modified_ms = metadata.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64);
                    out.push(ObjectMeta { path: relative, size: metadata.len(), modified_ms });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub fn delete(&self, path: &str) -> Result<(), StoreError> {
        let target = self.full(path);
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path: target, source: e }),
        }
        // Directories are only a local rendering of key prefixes: remove the ones left empty,
        // so a deleted prefix is gone for directory-walking readers too (as on S3).
        let mut dir = target.parent();
        while let Some(d) = dir {
            if d == self.root.as_path() || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, conformance};

    #[test]
    fn syncfs_is_trusted_from_linux_5_8_on() {
        assert!(kernel_at_least("6.18.44-fc-v782", (5, 8)));
        assert!(kernel_at_least("5.8.0", (5, 8)));
        assert!(kernel_at_least("5.10.0-35-amd64", (5, 8)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!kernel_at_least("4.19.0", (5, 8)));
        assert!(!kernel_at_least("", (5, 8)), "an unreadable release is not trusted");
        assert!(!kernel_at_least("linux", (5, 8)));
    }

    #[test]
    fn temporary_files_of_processes_that_are_gone_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        std::fs::create_dir_all(dir.path().join("t/gen-000001/day=1")).unwrap();
        let gone = dir.path().join("t/gen-000001/day=1/.part-0-1-2.parquet.4000000000.7.tmp");
        let mine = dir.path().join(format!("t/gen-000001/.x.parquet.{}.3.tmp", std::process::id()));
        let other = dir.path().join("t/gen-000001/.hidden");
        for path in [&gone, &mine, &other] {
            std::fs::write(path, b"partial").unwrap();
        }
        // Just written: its process may run elsewhere (another container), so it stays.
        assert_eq!(store.remove_stale_temporary("t/").unwrap(), 0);
        let long_ago = std::time::SystemTime::now() - TEMP_ORPHANED - std::time::Duration::from_secs(60);
        for path in [&gone, &mine] {
            File::options().write(true).open(path).unwrap().set_modified(long_ago).unwrap();
        }
        assert_eq!(temp_file_pid(".a.b.parquet.12.0.tmp"), Some(12));
        assert_eq!(temp_file_pid(".12.0.tmp"), None);
        assert_eq!(store.remove_stale_temporary("t/").unwrap(), 1);
        assert!(!gone.exists() && mine.exists() && other.exists());
    }

    #[test]
    fn puts_make_missing_directories_even_when_racing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        std::thread::scope(|scope| {
            for i in 0..16 {
                let store = &store;
                scope.spawn(move || store.put(&format!("t/year=2025/hour={}/f{i}", i % 2), &Bytes::from_static(b"x")).unwrap());
            }
        });
        for i in 0..16 {
            assert_eq!(store.get(&format!("t/year=2025/hour={}/f{i}", i % 2)).unwrap(), Bytes::from_static(b"x"));
        }
        // A file where a directory must be: an error naming it, not a loop.
        store.put("t/file", &Bytes::from_static(b"x")).unwrap();
        let err = store.put("t/file/x", &Bytes::from_static(b"y")).unwrap_err();
        assert!(err.to_string().contains("t/file"), "{err}");
    }

    /// A three-worker test once failed at shutdown: one worker listed the writer records while
    /// another deleted its own, and the stat between the two failed with "No such file".
    #[test]
    fn a_listing_passes_over_objects_deleted_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..20 {
                        std::fs::create_dir_all(dir.path().join("t/w")).unwrap();
                        std::fs::write(dir.path().join(format!("t/w/{round}-{i}.json")), b"{}").unwrap();
                    }
                    for i in 0..20 {
                        std::fs::remove_file(dir.path().join(format!("t/w/{round}-{i}.json"))).unwrap();
                    }
                    round += 1;
                }
            });
            let started = std::time::Instant::now();
            let mut listed = 0;
            let mut failed = None;
            while failed.is_none() && started.elapsed() < std::time::Duration::from_secs(2) {
                match store.list("t/w/") {
                    Ok(found) => listed += found.len(),
                    Err(e) => failed = Some(e),
                }
            }
            // Stopped before asserting: the scope waits for the deleting thread.
            stop.store(true, Ordering::Relaxed);
            assert!(failed.is_none(), "{failed:?}");
            assert!(listed > 0, "the listing never saw an object: the race was not exercised");
        });
    }

    #[tokio::test]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run(&Store::Local(LocalStore::new(dir.path()))).await;
    }
}
