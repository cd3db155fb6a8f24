//! Where events come from and go to, as users write it on the command line.
//!
//! Every binary takes endpoints as URIs and parses them here, once, into [`Endpoint`], so a typo
//! fails at start with the list of accepted forms instead of deep inside a run.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed endpoint URI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// The embedded durable log in a local directory (`log:PATH`).
    Log(PathBuf),
    /// An Amazon Kinesis data stream, by name (`kinesis:NAME`).
    Kinesis(String),
    /// An Amazon SQS queue, by name or by its full queue URL (`sqs:NAME`, `sqs:https://…`).
    Sqs(String),
    /// An SQS queue of S3 event notifications (`sqs+s3:NAME`): each object the bucket reports
    /// created is a file of rows (a consumer source; the seeds' file-drop pattern).
    SqsS3(String),
    /// An Amazon Data Firehose delivery stream (`firehose:NAME`).
    Firehose(String),
    /// An S3 bucket and key prefix (`s3://bucket/prefix`); the prefix has no leading or
    /// trailing slash and may be empty.
    S3 { bucket: String, prefix: String },
    /// A plain local path (no scheme).
    Local(PathBuf),
}

/// The forms [`Endpoint::from_str`] accepts, quoted in every parse error.
pub const ACCEPTED_FORMS: &str = "log:PATH, kinesis:STREAM, sqs:QUEUE (name or URL), sqs+s3:QUEUE, \
    firehose:DELIVERY_STREAM, s3://BUCKET[/PREFIX], or a plain local path";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {input:?}: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct EndpointError {
    pub input: String,
    pub reason: String,
}

impl EndpointError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        EndpointError { input: input.to_string(), reason: reason.into() }
    }
}

/// Kinesis stream names: 1–128 of `[a-zA-Z0-9_.-]`. The same rule holds for Firehose delivery
/// streams and (plus 80-char limit) SQS queue names; checking here turns an AWS-side
/// `ValidationException` into an error at start.
fn valid_aws_name(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EndpointError::new(input, "it is empty"));
        }
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len()) && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !bucket_ok {
                return Err(EndpointError::new(input, format!("{bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, '-', '.')")));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Endpoint::S3 { bucket: bucket.to_string(), prefix });
        }
        let Some((scheme, rest)) = trimmed.split_once(':') else {
            return Ok(Endpoint::Local(PathBuf::from(trimmed)));
        };
        // A Windows drive letter or a path that merely contains ':' has no known scheme: treat
        // it as a path only if the scheme is not a word we would recognise with a typo.
        match scheme {
            "log" | "file" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(EndpointError::new(input, "the log path is empty"));
                }
                Ok(Endpoint::Log(PathBuf::from(path)))
            }
            "kinesis" => {
                let name = rest.strip_prefix("//").unwrap_or(rest);
                if !valid_aws_name(name, 128) {
                    return Err(EndpointError::new(input, "a stream name is 1-128 characters of letters, digits, '_', '-', '.'"));
                }
                Ok(Endpoint::Kinesis(name.to_string()))
            }
            "firehose" => {
                let name = rest.strip_prefix("//").unwrap_or(rest);
                if !valid_aws_name(name, 64) {
                    return Err(EndpointError::new(input, "a delivery stream name is 1-64 characters of letters, digits, '_', '-', '.'"));
                }
                Ok(Endpoint::Firehose(name.to_string()))
            }
            "sqs" | "sqs+s3" => {
                let wrap = |queue: String| if scheme == "sqs" { Endpoint::Sqs(queue) } else { Endpoint::SqsS3(queue) };
                if rest.starts_with("http://") || rest.starts_with("https://") {
                    return Ok(wrap(rest.to_string()));
                }
                let name = rest.strip_prefix("//").unwrap_or(rest);
                let base = name.strip_suffix(".fifo").unwrap_or(name);
                if !valid_aws_name(base, 80) || base.contains('.') {
                    return Err(EndpointError::new(input, "a queue is a name of 1-80 letters, digits, '_', '-' (optionally ending in .fifo) or a queue URL"));
                }
                Ok(wrap(name.to_string()))
            }
            "s3" | "s3a" | "s3n" => Err(EndpointError::new(input, "S3 locations are written s3://bucket/prefix")),
            other if other.len() > 1 && other.bytes().all(|b| b.is_ascii_alphanumeric()) => Err(EndpointError::new(input, format!("unknown scheme {other:?}"))),
            _ => Ok(Endpoint::Local(PathBuf::from(trimmed))),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Log(p) => write!(f, "log:{}", p.display()),
            Endpoint::Kinesis(n) => write!(f, "kinesis:{n}"),
            Endpoint::Sqs(n) => write!(f, "sqs:{n}"),
            Endpoint::SqsS3(n) => write!(f, "sqs+s3:{n}"),
            Endpoint::Firehose(n) => write!(f, "firehose:{n}"),
            Endpoint::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Endpoint::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Endpoint::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        s.parse()
    }

    #[test]
    fn parses_every_accepted_form() {
        assert_eq!(parse("log:./data/log").unwrap(), Endpoint::Log("./data/log".into()));
        assert_eq!(parse("log:///var/log/k").unwrap(), Endpoint::Log("/var/log/k".into()));
        assert_eq!(parse("kinesis:sales-events").unwrap(), Endpoint::Kinesis("sales-events".into()));
        assert_eq!(parse("sqs:orders").unwrap(), Endpoint::Sqs("orders".into()));
        assert_eq!(parse("sqs:orders.fifo").unwrap(), Endpoint::Sqs("orders.fifo".into()));
        assert_eq!(parse("sqs+s3:drops").unwrap(), Endpoint::SqsS3("drops".into()));
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";
        assert_eq!(parse(&format!("sqs:{url}")).unwrap(), Endpoint::Sqs(url.into()));
        assert_eq!(parse("firehose:raw_sales").unwrap(), Endpoint::Firehose("raw_sales".into()));
        assert_eq!(parse("s3://my-lake/warehouse/sales/").unwrap(), Endpoint::S3 { bucket: "my-lake".into(), prefix: "warehouse/sales".into() });
        assert_eq!(parse("s3://my-lake").unwrap(), Endpoint::S3 { bucket: "my-lake".into(), prefix: String::new() });
        assert_eq!(parse("./lake").unwrap(), Endpoint::Local("./lake".into()));
        assert_eq!(parse("/tmp/lake").unwrap(), Endpoint::Local("/tmp/lake".into()));
    }

    #[test]
    fn rejects_with_accepted_forms_listed() {
        for bad in ["", "kinesis:", "kinesis:has space", "sqs:a.b", "s3://UPPER/x", "s3://ab", "s3:bucket", "kafka:topic", "log:"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("accepted forms: log:PATH"), "{bad:?} gave {err}");
        }
        assert!(parse("kafka:topic").unwrap_err().to_string().contains("unknown scheme \"kafka\""));
    }

    #[test]
    fn display_round_trips() {
        for s in ["log:data/log", "kinesis:k", "sqs:q", "firehose:f", "s3://bkt/a/b", "s3://bkt", "lake/dir"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
            assert_eq!(parse(&parse(s).unwrap().to_string()).unwrap(), parse(s).unwrap());
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn valid_names_round_trip(name in "[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,60}", bucket in "[a-z0-9][a-z0-9-]{2,20}", prefix in "([a-z0-9_]{1,8}/){0,3}[a-z0-9_]{0,8}") {
            for uri in [format!("kinesis:{name}"), format!("firehose:{name}"), format!("log:{name}"), format!("s3://{bucket}/{prefix}")] {
                let parsed: Endpoint = uri.parse().unwrap();
                prop_assert_eq!(parsed.to_string().parse::<Endpoint>().unwrap(), parsed);
            }
        }

        #[test]
        fn anything_parses_or_explains(input in ".{0,40}") {
            match input.parse::<Endpoint>() {
                Ok(_) => {}
                Err(e) => prop_assert!(e.to_string().contains("accepted forms")),
            }
        }
    }
}
