//! `relman list`.

use crate::cli::GlobalArgs;
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    root.require_initialised()?;
    let rows = relman_releases::store::overview(&root)?.list();
    if global.json {
        ui::json(&rows);
        return Ok(OK);
    }
    if rows.is_empty() {
        ui::say("no releases yet: `relman build --source DIR` makes one");
        return Ok(OK);
    }
    let width = rows
        .iter()
        .map(|r| r.id.as_str().len())
        .max()
        .unwrap_or(2)
        .max(2);
    ui::data(format!(
        "{:width$}  {:8}  {:24}  {:10}  {:>9}",
        "ID", "STATE", "CREATED", "REVISION", "SIZE"
    ));
    for row in rows {
        let role = match (row.current, row.rollback_target) {
            (true, _) => Some("current"),
            (_, true) => Some("rollback target"),
            _ => None,
        };
        let exclusion = row.exclusion.map(|e| e.to_string());
        let mark = [role, exclusion.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let created = row
            .created_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "-".into());
        let revision = row
            .revision
            .as_deref()
            .map_or("-", |r| &r[..r.len().min(10)]);
        let size = row.bytes.map_or_else(|| "-".into(), ui::bytes);
        ui::data(
            format!(
                "{:width$}  {:8}  {:24}  {:10}  {:>9}  {mark}",
                row.id.as_str(),
                row.state.to_string(),
                created,
                revision,
                size
            )
            .trim_end(),
        );
    }
    Ok(OK)
}
