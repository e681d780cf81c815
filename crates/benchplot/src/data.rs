//! Reading the figures: a TSV with a header line and `series<TAB>x<TAB>y` rows.

use std::path::Path;

use crate::error::{Error, Result};

/// One line of the chart: its legend label and its points, sorted by x.
#[derive(Debug, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// Reads `path`; series keep the order in which they first appear.
pub(crate) fn read(path: &Path) -> Result<Vec<Series>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|(line, reason)| Error::Parse {
        path: path.to_owned(),
        line,
        reason,
    })
}

fn parse(text: &str) -> std::result::Result<Vec<Series>, (usize, String)> {
    let mut series: Vec<Series> = Vec::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let number = |field: Option<&str>, what: &str| {
            let field = field.ok_or((index + 1, format!("no {what} column")))?;
            field
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or((index + 1, format!("{what} `{field}` is not a number")))
        };
        let mut fields = line.split('\t');
        let name = fields.next().unwrap_or_default().to_owned();
        let x = number(fields.next(), "x")?;
        let y = number(fields.next(), "y")?;
        match series.iter_mut().find(|s| s.name == name) {
            Some(existing) => existing.points.push((x, y)),
            None => series.push(Series {
                name,
                points: vec![(x, y)],
            }),
        }
    }
    for one in &mut series {
        one.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_into_series_in_order_of_appearance_sorted_by_x() {
        let text = "series\tx\ty\nb\t10\t2\na\t1\t0.5\nb\t1\t1\n";
        let series = parse(text).unwrap();
        assert_eq!(
            series,
            vec![
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 1.0), (10.0, 2.0)]
                },
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 0.5)]
                },
            ]
        );
    }

    #[test]
    fn a_value_that_is_not_a_number_names_its_line() {
        let err = parse("series\tx\ty\na\t1\t2\na\t2\tnan\n").unwrap_err();
        assert_eq!(err, (3, "y `nan` is not a number".into()));
        let err = parse("series\tx\ty\na\t1\n").unwrap_err();
        assert_eq!(err, (2, "no y column".into()));
    }
}
