//! Interval fsyncs off the writer's thread.
//!
//! An fsync waits for the disk to take every dirty page of the segment: with a 1 s interval at
//! a few hundred MB/s that is a stall of a large part of a second, during which the writer (and
//! the producer feeding it) would stand still. Here a helper thread fsyncs a duplicate handle
//! of the segment while the writer goes on appending. The bound on unsynced data becomes the
//! interval plus one fsync. Rotation and close still fsync on the writer's thread: recovery
//! relies on every finished segment being durable before the next exists.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(crate) struct BackgroundSync {
    requests: Option<SyncSender<(File, PathBuf)>>,
    in_flight: Arc<AtomicBool>,
    /// The first failure, reported to the writer at its next flush (which then poisons it).
    failure: Arc<Mutex<Option<super::LogError>>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundSync {
    pub(crate) fn start(shard: u32) -> BackgroundSync {
        let (requests, receiver) = sync_channel::<(File, PathBuf)>(1);
        let in_flight = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (flag, slot) = (in_flight.clone(), failure.clone());
        let thread =
            std::thread::Builder::new().name(format!("kappa-log-sync-{shard}")).spawn(move || run(receiver, flag, slot)).expect("spawn the log sync thread");
        BackgroundSync { requests: Some(requests), in_flight, failure, thread: Some(thread) }
    }

    /// Starts an fsync of `file` unless one is still running; true if started.
    pub(crate) fn request(&self, file: &File, path: &std::path::Path) -> Result<bool, super::LogError> {
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let duplicate = file.try_clone().map_err(|source| super::LogError::Io { path: path.to_path_buf(), source })?;
        let sender = self.requests.as_ref().expect("running");
        if sender.send((duplicate, path.to_path_buf())).is_err() {
            self.in_flight.store(false, Ordering::Release);
        }
        Ok(true)
    }

    pub(crate) fn take_failure(&self) -> Option<super::LogError> {
        self.failure.lock().expect("sync failure lock").take()
    }

    /// Waits for a running fsync to end, so a following synchronous fsync really covers
    /// everything and no error is lost.
    pub(crate) fn wait_idle(&self) {
        while self.in_flight.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

fn run(receiver: Receiver<(File, PathBuf)>, in_flight: Arc<AtomicBool>, failure: Arc<Mutex<Option<super::LogError>>>) {
    while let Ok((file, path)) = receiver.recv() {
        if let Err(source) = file.sync_data() {
            failure.lock().expect("sync failure lock").get_or_insert(super::LogError::Io { path, source });
        }
        in_flight.store(false, Ordering::Release);
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its current fsync.
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::log::{FsyncPolicy, Log, LogConfig, StartAt};

    #[test]
    fn interval_fsyncs_in_the_background_and_close_makes_everything_durable() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::create(dir.path(), 1).unwrap();
        let config = LogConfig { segment_bytes: 64 * 1024, fsync: FsyncPolicy::Interval(Duration::from_millis(1)) };
        let mut writer = log.writer(0, &config).unwrap();
        for i in 0..5_000u32 {
            writer.append(b"k", format!("payload {i}").as_bytes(), i64::from(i)).unwrap();
            if i % 50 == 0 {
                writer.flush().unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        writer.close().unwrap();
        let mut reader = log.reader(0, StartAt::Earliest).unwrap();
        let mut n = 0u32;
        while let Some(record) = reader.next().unwrap() {
            assert_eq!(record.payload, format!("payload {n}").into_bytes());
            n += 1;
        }
        assert_eq!(n, 5_000);
        // The shard is free again: the sync thread ended with the writer.
        log.writer(0, &config).unwrap().close().unwrap();
    }
}
