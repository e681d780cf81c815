//! `loadgen`: runs a [`relman_loadgen::Load`] against a loopback address for a bounded time
//! and prints its stats as one JSON line on stdout.
//!
//! It stops when `--seconds` have passed, when `--max-requests` were sent, or as soon as the
//! file named by `--stop-file` exists, which is how a benchmark script ends it early and
//! still gets the stats.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use relman_loadgen::{Load, LoadConfig};

const USAGE: &str = "usage: loadgen [--addr 127.0.0.1:3000] [--seconds 10] [--keepalive 4] \
[--fresh 2] [--slow 1] [--slow-ms 800] [--max-requests 1000000] [--timeout-ms 10000] \
[--stop-file PATH]";
const MAX_SECONDS: u64 = 3600;
const STOP_FILE_POLL: Duration = Duration::from_millis(50);

struct Options {
    config: LoadConfig,
    stop_file: Option<PathBuf>,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("loadgen: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stats = run(options);
    match serde_json::to_string(&stats) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: cannot encode the stats: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> relman_loadgen::Stats {
    let load = Load::start(options.config);
    while !load.is_finished() {
        if options.stop_file.as_ref().is_some_and(|path| path.exists()) {
            return load.stop();
        }
        std::thread::sleep(STOP_FILE_POLL);
    }
    load.stop()
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let default_addr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let mut config = LoadConfig {
        max_duration: Duration::from_secs(10),
        ..LoadConfig::new(default_addr)
    };
    let mut stop_file = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("`{flag}` needs a value")),
        };
        match flag.as_str() {
            "--addr" => {
                let addr: SocketAddr = value
                    .parse()
                    .map_err(|_| format!("`--addr {value}` is not IP:PORT"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "`--addr {value}` is not a loopback address; loadgen only loads this host"
                    ));
                }
                config.addr = addr;
            }
            "--seconds" => {
                let seconds = number(&flag, &value)?;
                if seconds == 0 || seconds > MAX_SECONDS {
                    return Err(format!("`--seconds` must be between 1 and {MAX_SECONDS}"));
                }
                config.max_duration = Duration::from_secs(seconds);
            }
            "--keepalive" => config.keepalive_workers = workers(&flag, &value)?,
            "--fresh" => config.fresh_workers = workers(&flag, &value)?,
            "--slow" => config.slow_workers = workers(&flag, &value)?,
            "--slow-ms" => config.slow_ms = number(&flag, &value)?,
            "--max-requests" => config.max_requests = number(&flag, &value)?,
            "--timeout-ms" => {
                let millis = number(&flag, &value)?;
                if millis == 0 {
                    return Err("`--timeout-ms` must be at least 1".to_owned());
                }
                config.request_timeout = Duration::from_millis(millis);
            }
            "--stop-file" => stop_file = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option `{flag}`")),
        }
    }
    if config.keepalive_workers + config.fresh_workers + config.slow_workers == 0 {
        return Err(
            "no workers: give at least one of `--keepalive`, `--fresh`, `--slow`".to_owned(),
        );
    }
    Ok(Some(Options { config, stop_file }))
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("`{flag} {value}` is not a whole number"))
}

fn workers(flag: &str, value: &str) -> Result<usize, String> {
    let count = number(flag, value)?;
    if count > 256 {
        return Err(format!("`{flag} {value}`: at most 256 workers of a kind"));
    }
    Ok(count as usize)
}
