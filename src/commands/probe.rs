//! `relman probe`.

use crate::cli::GlobalArgs;
use crate::error::{CliError, FAILED, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    let outcome = relman_activate::probe(&root)?;
    let code = if outcome.ok { OK } else { FAILED };
    if global.json {
        let mut value = serde_json::to_value(&outcome).expect("a probe outcome always serialises");
        if !outcome.ok {
            value["error"] = outcome.message.clone().into();
            value["code"] = code.into();
        }
        ui::json(&value);
    } else {
        ui::data(if outcome.ok { "ok" } else { "failed" });
    }
    if outcome.ok {
        ui::say(&outcome.message);
    } else {
        ui::say(format!("error: {}", outcome.message));
    }
    Ok(code)
}
