//! `log.json`: what makes a directory a log, written once when the log is created.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LogError;

pub(crate) const META_FILE: &str = "log.json";
const FORMAT: &str = "kappa-lake-log";
/// Version 2 added shaped events (`shapes/`, see [`crate::shaped`]); version 3 gave shapes
/// their names' types. Older logs are read as they are, and become version 3 when a producer
/// first stores a shape in them, so that a build that cannot read the shapes refuses the log
/// instead of quarantining its rows.
pub(crate) const VERSION: u32 = 3;
const OLDEST_READ: u32 = 1;
/// Shard directories are named with four digits.
pub(crate) const MAX_SHARDS: u32 = 10_000;

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    shards: u32,
}

pub(crate) fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard:04}"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// Reads the shard count of the log at `dir`.
pub(crate) fn read(dir: &Path) -> Result<u32, LogError> {
    read_meta(dir).map(|meta| meta.shards)
}

/// Raises the log's format version to [`VERSION`] (an atomic replacement of `log.json`).
pub(crate) fn upgrade(dir: &Path) -> Result<(), LogError> {
    let meta = read_meta(dir)?;
    if meta.version == VERSION {
        return Ok(());
    }
    let path = dir.join(META_FILE);
    let tmp = dir.join(format!(".{META_FILE}.{}.upgrade.tmp", std::process::id()));
    let text = meta_text(&Meta { version: VERSION, ..meta });
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

fn meta_text(meta: &Meta) -> String {
    let mut text = serde_json::to_string_pretty(meta).expect("plain struct serialises");
    text.push('\n');
    text
}

fn read_meta(dir: &Path) -> Result<Meta, LogError> {
    let path = dir.join(META_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(LogError::NotALog { path: dir.to_path_buf() });
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let bad = |reason: String| LogError::BadMetadata { path: path.clone(), reason };
    let meta: Meta = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if meta.format != FORMAT {
        return Err(bad(format!("format is {:?}, expected {FORMAT:?}", meta.format)));
    }
    if !(OLDEST_READ..=VERSION).contains(&meta.version) {
        return Err(bad(format!("format version {} is not supported (this build reads versions {OLDEST_READ} to {VERSION})", meta.version)));
    }
    if meta.shards == 0 || meta.shards > MAX_SHARDS {
        return Err(bad(format!("shard count {} outside 1..={MAX_SHARDS}", meta.shards)));
    }
    Ok(meta)
}

/// Creates the shard directories, then `log.json` last and only if absent, so a log is either
/// complete or not a log at all, and two racing creators cannot both succeed.
pub(crate) fn create(dir: &Path, shards: u32) -> Result<(), LogError> {
    if shards == 0 || shards > MAX_SHARDS {
        return Err(LogError::InvalidShardCount { shards, max: MAX_SHARDS });
    }
    let path = dir.join(META_FILE);
    if path.try_exists().map_err(io(&path))? {
        return Err(LogError::AlreadyExists { path: dir.to_path_buf() });
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    for shard in 0..shards {
        let sd = shard_dir(dir, shard);
        fs::create_dir_all(&sd).map_err(io(&sd))?;
    }
    let tmp = dir.join(format!(".{META_FILE}.{}.tmp", std::process::id()));
    let text = meta_text(&Meta { format: FORMAT.into(), version: VERSION, shards });
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        // A hard link, unlike rename, fails if the target exists: create-if-absent, atomically.
        match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(LogError::AlreadyExists { path: dir.to_path_buf() }),
            Err(e) => Err(io(&path)(e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

/// Makes directory entries (new files, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
