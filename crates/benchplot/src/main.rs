//! `benchplot`: draws one SVG line chart from a TSV of figures that a `bench/` script wrote.
//!
//! The benchmark scripts own the numbers; this binary only turns them into a picture, so that
//! the charts in `docs/` are redrawn from the same figures every time a benchmark reruns.
//! Input: a header line, then `series<TAB>x<TAB>y` rows (one line per series in the legend, in
//! the order a series first appears). Output: an SVG whose text is SVG `<text>`, no fonts needed.
#![forbid(unsafe_code)]

mod chart;
mod data;
mod error;

use std::process::ExitCode;

use clap::Parser;

/// Draws a line chart (one line per series) from a TSV into an SVG file.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The TSV: a header line, then `series<TAB>x<TAB>y` rows.
    data: std::path::PathBuf,
    /// The SVG to write.
    out: std::path::PathBuf,
    /// The chart's title.
    #[arg(long)]
    title: String,
    /// The x axis' description.
    #[arg(long)]
    x_label: String,
    /// The y axis' description.
    #[arg(long)]
    y_label: String,
    /// Logarithmic x axis (every x must be positive).
    #[arg(long)]
    log_x: bool,
    /// Logarithmic y axis (every y must be positive).
    #[arg(long)]
    log_y: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = data::read(&cli.data).and_then(|series| {
        let chart = chart::Chart {
            title: &cli.title,
            x_label: &cli.x_label,
            y_label: &cli.y_label,
            log_x: cli.log_x,
            log_y: cli.log_y,
        };
        chart.draw(&series, &cli.out)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "benchplot: {err}");
            ExitCode::FAILURE
        }
    }
}
