//! Lines to standard output for the subcommands people pipe into `head` (`describe`,
//! `inspect`): when the reader closes the pipe, the command ends quietly with status 0, as
//! `ls | head` does, where `println!` panicked (exit 101, "failed printing to stdout").

use std::io::Write;

/// The reader of standard output closed it: the command has nobody left to tell anything.
#[derive(Debug, thiserror::Error)]
#[error("the reader of standard output closed it")]
pub struct ReaderGone;

/// Writes one line; a closed pipe is [`ReaderGone`], any other failure an error to report.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{args}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ReaderGone.into()),
        other => Ok(other?),
    }
}

/// True when `error` (or what it wraps) is [`ReaderGone`].
pub fn reader_gone(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<ReaderGone>())
}

/// `println!` that returns [`ReaderGone`] from the enclosing function instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))?
    };
}
pub(crate) use say;
