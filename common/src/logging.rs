//! How the binaries talk to their user: `tracing` to stderr, filtered by `KAPPA_LOG` (e.g.
//! `debug`, `info,kappa_consumer=debug`), with the AWS SDK's own chatter kept at warnings and
//! delta-rs's silent unless named (`KAPPA_LOG=info,deltalake_core=debug`): it logs an ERROR for
//! every table that does not exist yet, which for us is a normal start; its real failures reach
//! the user as our errors. And one way to end on an error.
//!
//! `--log-format json` (every binary) writes one JSON object per line instead — the event's
//! fields at the top level beside `timestamp`, `level`, `target` and `message` — which
//! CloudWatch Logs Insights queries by field (`fields level, message, table, shard, rows`);
//! the end-of-run summary and a fatal error are such lines too.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people: `2026-11-25T14:48:21Z  INFO status events_read=…`.
    #[default]
    Text,
    /// One JSON object per line, for log services.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: give text or json")),
        }
    }
}

static JSON: AtomicBool = AtomicBool::new(false);

pub fn init(format: LogFormat) {
    let mut directives = std::env::var("KAPPA_LOG").unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into());
    for quiet in ["deltalake_core", "buoyant_kernel", "delta_kernel"] {
        if !directives.contains(quiet) {
            directives.push_str(&format!(",{quiet}=off"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| "info".into());
    match format {
        LogFormat::Text => {
            // Colour codes only where a terminal shows them: in a log file or CI output they are noise.
            let ansi = std::io::stderr().is_terminal();
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).with_target(false).init();
        }
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
        }
    }
}

/// True with `--log-format json`.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// One line as the JSON log writes its events.
fn json_line(level: &str, message: &str, fields: serde_json::Map<String, serde_json::Value>) -> String {
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
    line.insert("level".into(), level.into());
    line.insert("message".into(), message.into());
    line.insert("target".into(), "kappa".into());
    line.extend(fields);
    serde_json::Value::Object(line).to_string()
}

/// Writes the end-of-run summary: `text` for people, or with `--log-format json` one line
/// holding `summary`'s fields (message `summary`).
pub fn summary(text: &str, summary: &impl serde::Serialize) {
    if is_json() {
        let fields = match serde_json::to_value(summary) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        eprintln!("{}", json_line("INFO", "summary", fields));
    } else {
        eprint!("{text}");
    }
}

/// Ends the process on an error the user can act on: one `error: …` line (the error's own
/// message, which names its cause), never a debug dump or a backtrace; those are for bugs,
/// which panic. With `--log-format json`, a JSON line of level ERROR with the exit status.
pub fn exit_with(error: &dyn std::fmt::Display, code: i32) -> ! {
    if is_json() {
        let mut fields = serde_json::Map::new();
        fields.insert("exit_status".into(), code.into());
        eprintln!("{}", json_line("ERROR", &error.to_string(), fields));
    } else {
        eprintln!("error: {error}");
    }
    std::process::exit(code)
}

/// What `--version` prints: the version and the commit the binary was built from (`KAPPA_COMMIT`
/// at build time, which scripts/release and scripts/image set; the binary's own `main` reads it,
/// so that only the binary is rebuilt when it changes).
pub fn version_line(commit: Option<&str>) -> &'static str {
    let line = format!("{} (commit {})", env!("CARGO_PKG_VERSION"), commit.unwrap_or("unknown: not built by scripts/release or scripts/image"));
    Box::leak(line.into_boxed_str())
}
