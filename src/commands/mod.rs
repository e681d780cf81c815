//! One file per command: each turns its flags into a request, calls one library function and
//! renders the result.

mod activate;
mod build;
mod deploy;
mod docs;
mod doctor;
mod history;
mod init;
mod list;
mod pack;
mod probe;
mod prune;
mod receive;
mod status;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};

use camino::Utf8PathBuf;
use relman_releases::{DeployRoot, ReleaseId};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::CliError;

/// Runs the parsed command and returns its exit code.
pub(crate) fn run(cli: Cli) -> Result<u8, CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(global, args),
        Command::Build(args) => build::run(global, args),
        Command::List => list::run(global),
        Command::Prune(args) => prune::run(global, args),
        Command::Verify(args) => verify::run(global, args),
        Command::Status(args) => status::run(global, &args),
        Command::Activate(args) => activate::activate(global, args),
        Command::Rollback(args) => activate::rollback(global, args),
        Command::Deploy(args) => deploy::run(global, args),
        Command::Probe => probe::run(global),
        Command::Doctor => doctor::run(global),
        Command::History => history::run(global),
        Command::Pack(args) => pack::run(global, args),
        Command::Receive(args) => receive::run(global, args),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
    }
}

/// The deploy root's path as given: `--root`, `$RELMAN_ROOT`, else the working directory.
pub(crate) fn root_path(global: &GlobalArgs) -> Utf8PathBuf {
    global
        .root
        .clone()
        .unwrap_or_else(|| Utf8PathBuf::from("."))
}

/// Opens the deploy root.
pub(crate) fn open_root(global: &GlobalArgs) -> Result<DeployRoot, CliError> {
    Ok(DeployRoot::open(&root_path(global))?)
}

/// Validates an ID from the command line.
pub(crate) fn parse_id(raw: &str) -> Result<ReleaseId, CliError> {
    Ok(ReleaseId::parse(raw)?)
}

/// Says that this process is waiting for the root lock.
pub(crate) fn waiting(holder: &str) {
    crate::ui::say(format!(
        "Blocking waiting for the deploy root lock, held by {holder}"
    ));
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns Ctrl-C, SIGTERM and SIGHUP into a request to stop: the library decides when stopping
/// is safe, so relman never dies with a build's children or a preflight still running.
pub(crate) fn on_interrupt(notice: impl Fn() + Send + 'static) {
    let _ = ctrlc::set_handler(move || {
        if !INTERRUPTED.swap(true, Ordering::SeqCst) {
            notice();
        }
    });
}

/// Whether an interrupt was received.
pub(crate) fn cancelled() -> &'static AtomicBool {
    &INTERRUPTED
}
