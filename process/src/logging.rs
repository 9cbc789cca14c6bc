//! Log set-up: tracing to stderr (stdout stays free for data such as the
//! sidecar's access log), JSON lines for machines or text for people.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`: JSON lines for machines, text for people.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    #[default]
    Text,
}

/// Logs to stderr at `info`, refined by `RUST_LOG` (e.g.
/// `RUST_LOG=paymesh_sidecar=debug`). Colours only on a terminal: escape
/// codes in a collected log file are noise. Call once, first thing in main.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    }

    #[test]
    fn log_format_takes_json_or_text_and_defaults_to_text() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("bin").chain(args.iter().copied()));
        assert_eq!(parse(&[]).unwrap().log_format, LogFormat::Text);
        assert_eq!(parse(&["--log-format", "json"]).unwrap().log_format, LogFormat::Json);
        assert_eq!(parse(&["--log-format=text"]).unwrap().log_format, LogFormat::Text);
        let err = parse(&["--log-format", "yaml"]).unwrap_err().to_string();
        assert!(err.contains("json") && err.contains("text"), "{err}");
    }
}
