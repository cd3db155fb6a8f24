//! The shapes of a log's shaped events, one file each: `<dir>/shapes/<id, 16 hex digits>.json`
//! holding the names and their types (see [`crate::shaped::Shape::to_json`]).
//!
//! A producer stores a shape, durably, before its first record that uses it, so a reader that
//! meets a shape id finds the file. Files are created once and never change: the id is a hash
//! of the content, so two producers storing the same shape write the same bytes, and the
//! create-if-absent link makes the race harmless.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::LogError;
use super::meta::{self, sync_dir};
use crate::shaped::Shape;

const SHAPES_DIR: &str = "shapes";

/// The shapes read so far from one log directory.
#[derive(Debug, Default)]
pub(crate) struct ShapeCache {
    shapes: Mutex<HashMap<u64, Arc<Shape>>>,
}

fn shape_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(SHAPES_DIR).join(format!("{id:016x}.json"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

impl ShapeCache {
    /// Makes `shape` durable in the log at `dir` (and the log's format version the one that has
    /// shapes), unless it is already there.
    pub(crate) fn store(&self, dir: &Path, shape: &Shape) -> Result<(), LogError> {
        if self.shapes.lock().expect("shape cache").contains_key(&shape.id()) {
            return Ok(());
        }
        meta::upgrade(dir)?;
        let shapes_dir = dir.join(SHAPES_DIR);
        fs::create_dir_all(&shapes_dir).map_err(io(&shapes_dir))?;
        let path = shape_path(dir, shape.id());
        if !path.exists() {
            let tmp = shapes_dir.join(format!(".{:016x}.{}.tmp", shape.id(), std::process::id()));
            let result = (|| {
                let mut f = File::create(&tmp).map_err(io(&tmp))?;
                f.write_all(shape.to_json().as_bytes()).map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                match fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(io(&path)(e)),
                }
            })();
            let _ = fs::remove_file(&tmp);
            result?;
            sync_dir(&shapes_dir)?;
            sync_dir(dir)?;
        }
        // What is there must be this shape: another one with the same id would be misread.
        let stored = self.load(dir, shape.id())?;
        if *stored != *shape {
            return Err(LogError::BadMetadata { path, reason: format!("holds {}, not {}, under the same id", stored.to_json(), shape.to_json()) });
        }
        Ok(())
    }

    /// The shape with id `id`.
    pub(crate) fn get(&self, dir: &Path, id: u64) -> Result<Arc<Shape>, LogError> {
        if let Some(shape) = self.shapes.lock().expect("shape cache").get(&id) {
            return Ok(shape.clone());
        }
        self.load(dir, id)
    }

    fn load(&self, dir: &Path, id: u64) -> Result<Arc<Shape>, LogError> {
        let path = shape_path(dir, id);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(LogError::MissingShape { id, path }),
            Err(e) => return Err(io(&path)(e)),
        };
        let shape = Shape::from_json(&text).map_err(|e| LogError::BadMetadata { path: path.clone(), reason: e.to_string() })?;
        if shape.id() != id {
            return Err(LogError::BadMetadata { path, reason: format!("its content hashes to {:016x}, not to its name", shape.id()) });
        }
        let shape = Arc::new(shape);
        self.shapes.lock().expect("shape cache").insert(id, shape.clone());
        Ok(shape)
    }
}
