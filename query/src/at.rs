//! Which version of a table a query reads: a plain value the options, the lake and the
//! errors all speak of.

use chrono::{DateTime, Utc};

/// Which version of the table a query reads.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    Latest,
    Version(u64),
    /// The version current at that time (Delta time travel): before a replay's switch, the
    /// generation readers saw then.
    Time(DateTime<Utc>),
}
