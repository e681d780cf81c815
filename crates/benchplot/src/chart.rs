//! Drawing: one line with markers per series, linear or logarithmic axes, a legend.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::data::Series;
use crate::error::{Error, Result};

/// What the chart says besides its data.
pub(crate) struct Chart<'a> {
    pub(crate) title: &'a str,
    pub(crate) x_label: &'a str,
    pub(crate) y_label: &'a str,
    pub(crate) log_x: bool,
    pub(crate) log_y: bool,
}

/// Colour-blind-safe (Okabe–Ito), in legend order.
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

impl Chart<'_> {
    /// Writes the chart of `series` to `out` as SVG.
    pub(crate) fn draw(&self, series: &[Series], out: &Path) -> Result<()> {
        let data_error = |reason: &str| Error::Data {
            path: out.to_owned(),
            reason: reason.to_owned(),
        };
        let points = || series.iter().flat_map(|s| s.points.iter().copied());
        if points().next().is_none() {
            return Err(data_error("no points to draw"));
        }
        if self.log_x && points().any(|(x, _)| x <= 0.0) {
            return Err(data_error("a logarithmic x axis needs every x above 0"));
        }
        if self.log_y && points().any(|(_, y)| y <= 0.0) {
            return Err(data_error("a logarithmic y axis needs every y above 0"));
        }
        let x = span(points().map(|p| p.0), self.log_x, false);
        let y = span(points().map(|p| p.1), self.log_y, true);
        match (self.log_x, self.log_y) {
            (false, false) => self.plot(series, out, x, y),
            (true, false) => self.plot(series, out, x.log_scale(), y),
            (false, true) => self.plot(series, out, x, y.log_scale()),
            (true, true) => self.plot(series, out, x.log_scale(), y.log_scale()),
        }
    }

    fn plot<X, Y>(&self, series: &[Series], out: &Path, x: X, y: Y) -> Result<()>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let fail = |err: &dyn std::fmt::Display| Error::Draw {
            path: out.to_owned(),
            reason: err.to_string(),
        };
        let root = SVGBackend::new(out, (860, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x, y)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .x_labels(8)
            .y_labels(8)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| fail(&e))?;
        for (index, one) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    one.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label(one.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(
                    one.points
                        .iter()
                        .map(|&point| Circle::new(point, 3, colour.filled())),
                )
                .map_err(|e| fail(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
        Ok(())
    }
}

/// The axis range: the data's, widened a little so no marker sits on the frame (by a factor on
/// a log axis). A linear y axis starts at 0 when the data are not negative, so heights compare.
fn span(values: impl Iterator<Item = f64>, log: bool, y: bool) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if log {
        let (low, high) = if low == high {
            (low / 2.0, high * 2.0)
        } else {
            (low, high)
        };
        return low / 1.25..high * 1.25;
    }
    let pad = if high > low {
        (high - low) * 0.05
    } else {
        high.abs().max(1.0) * 0.5
    };
    let low = if y && low >= 0.0 { 0.0 } else { low - pad };
    low..high + pad
}

/// Tick labels: whole numbers without a fraction, small ones with what they need.
fn number(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else if value.abs() >= 100.0 || value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_y_axis_of_counts_starts_at_zero_and_a_log_one_widens_by_a_factor() {
        let range = span([3.0, 10.0].into_iter(), false, true);
        assert_eq!(range.start, 0.0);
        assert!(range.end > 10.0);
        let range = span([1.0, 100.0].into_iter(), true, false);
        assert!((range.start - 0.8).abs() < 1e-9 && (range.end - 125.0).abs() < 1e-9);
    }

    #[test]
    fn tick_labels_drop_needless_fractions() {
        assert_eq!(number(20000.0), "20000");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.025), "0.025");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn the_svg_has_its_text_as_text_elements() {
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("chart.svg");
        let series = vec![Series {
            name: "relman list".into(),
            points: vec![(10.0, 0.02), (100.0, 0.021), (500.0, 0.03)],
        }];
        let chart = Chart {
            title: "time vs releases",
            x_label: "releases",
            y_label: "seconds",
            log_x: true,
            log_y: true,
        };
        chart.draw(&series, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["time vs releases", "relman list", "releases", "seconds"] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "no <text> for {text}"
            );
        }
        assert!(svg.contains("<polyline"), "no line drawn");
    }
}
