//! Writing and reading files around the page cache (`O_DIRECT`), for data this process does not
//! read back through the cache: the consumer's scratch files and the lake's data files.
//!
//! Why: on this project's machines, copying written bytes into freshly allocated cache pages
//! costs far more than the disk write it stands for. `dd` of 1 GiB: 0.43 s direct against
//! 2.15 s through the cache with an fsync; in a 10M-row wide consumer run, the copy of the
//! lake's 640 MiB into the cache was 8.6% of all CPU samples. Every lake file is fsynced before
//! its commit anyway, so the cache only ever held a copy on its way to the disk.
//!
//! Direct I/O needs aligned memory, offsets and lengths: bytes go through an aligned staging
//! buffer, and a file whose length is not a whole number of blocks is written padded, then cut
//! back to its length. A file system without direct I/O (tmpfs on older kernels, some network
//! file systems) refuses the flag at open or the first write with `EINVAL`; callers then write
//! the ordinary way.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Alignment of direct I/O's memory, offsets and lengths: a page, a multiple of any device's
/// logical block size.
pub const DIRECT_ALIGN: usize = 4096;

/// Bytes staged per direct write: each thread that writes keeps this much (a commit's puts
/// run on several).
const STAGING: usize = 256 << 10;

/// Opens `path` with `O_DIRECT` on top of `options`; an error where the platform or the file
/// system has no direct I/O.
pub fn open_direct(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECT).open(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (options, path);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// True for the errors with which a file system says it has no direct I/O.
pub fn is_unsupported(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::Unsupported || error.raw_os_error() == Some(libc::EINVAL)
}

/// Zeroed bytes whose start is aligned for direct I/O: a vector with room to spare, used from
/// its first aligned byte on.
pub struct AlignedBuf {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let bytes = vec![0; len + DIRECT_ALIGN];
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { bytes, start, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the buffer to `len` bytes (its capacity stays).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    /// The whole vector, and where the aligned bytes start in it: to keep the bytes without a
    /// copy (an Arrow buffer over them).
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.bytes, self.start)
    }

    /// `len` bytes of `file` from `offset`, read into new aligned memory. With `O_DIRECT`,
    /// `offset` and `len` must be aligned too.
    pub fn read_at(file: &File, len: usize, offset: u64) -> std::io::Result<AlignedBuf> {
        let mut buf = AlignedBuf::new(len);
        read_exact_at(file, buf.as_mut_slice(), offset)?;
        Ok(buf)
    }
}

thread_local! {
    /// Each thread's staging buffer, kept: a fresh megabyte per file would be a megabyte of
    /// freshly faulted pages per file.
    static STAGED: std::cell::RefCell<Option<AlignedBuf>> = const { std::cell::RefCell::new(None) };
}

/// Writes `data` as the whole content of `file` (opened with [`open_direct`], empty), through
/// this thread's staging buffer. The file is not synced.
pub fn write_all_direct(file: &File, data: &[u8]) -> std::io::Result<()> {
    STAGED.with_borrow_mut(|staged| {
        let staging = staged.get_or_insert_with(|| AlignedBuf::new(STAGING));
        let mut offset = 0;
        for piece in data.chunks(STAGING) {
            let padded = piece.len().next_multiple_of(DIRECT_ALIGN);
            let block = &mut staging.bytes[staging.start..staging.start + padded];
            block[..piece.len()].copy_from_slice(piece);
            block[piece.len()..].fill(0);
            write_all_at(file, block, offset as u64)?;
            offset += piece.len();
        }
        // The last block was written whole: cut the padding off.
        if !data.len().is_multiple_of(DIRECT_ALIGN) {
            file.set_len(data.len() as u64)?;
        }
        Ok(())
    })
}

/// Writes one zeroed block at the start of `file` (opened with [`open_direct`]): the error a
/// file system that takes the flag but not direct writes gives, before anything else is written.
pub fn probe_direct(file: &File) -> std::io::Result<()> {
    write_all_at(file, AlignedBuf::new(DIRECT_ALIGN).as_slice(), 0)
}

fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_any_length_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        // Around the staging buffer and the block size, and empty.
        for len in [0, 1, 4095, 4096, 4097, STAGING - 1, STAGING, STAGING + 1, 3 * STAGING + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("{len}.bin"));
            match open_direct(OpenOptions::new().write(true).create_new(true), &path) {
                Ok(file) => match write_all_direct(&file, &data) {
                    Ok(()) => {}
                    Err(e) if is_unsupported(&e) => {
                        eprintln!("no direct I/O on this file system's writes: {e}");
                        std::fs::write(&path, &data).unwrap();
                    }
                    Err(e) => panic!("{len} bytes: {e}"),
                },
                Err(e) if is_unsupported(&e) => {
                    eprintln!("no direct I/O on this file system: {e}");
                    std::fs::write(&path, &data).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
            assert!(std::fs::read(&path).unwrap() == data, "{len} bytes came back different");
            // Read back around the cache, in whole aligned blocks, and through it at any offset.
            if len > 0
                && len.is_multiple_of(DIRECT_ALIGN)
                && let Ok(file) = open_direct(OpenOptions::new().read(true), &path)
            {
                let read = AlignedBuf::read_at(&file, len, 0).unwrap();
                assert!(read.as_slice() == data.as_slice(), "{len} bytes read directly came back different");
            }
            let file = File::open(&path).unwrap();
            let from = len / 3;
            let read = AlignedBuf::read_at(&file, len - from, from as u64).unwrap();
            assert_eq!(read.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            assert!(read.as_slice() == &data[from..], "{len} bytes from {from} came back different");
            let err = AlignedBuf::read_at(&file, len - from + 1, from as u64).err().expect("a read past the end fails");
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        }
    }
}
