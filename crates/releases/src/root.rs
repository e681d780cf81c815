//! The deploy root: where everything lives, and `relman init`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{CONFIG_FILE, Config, TEMPLATE};
use crate::error::{Error, Result};
use crate::fs::lock::{RootLock, lock_root};
use crate::id::ReleaseId;
use crate::scaffold::{self, AppKind, AppSpec, Detected, NEXT_SERVER_FILE};

/// A deploy root, by its canonical path.
#[derive(Debug, Clone)]
pub struct DeployRoot {
    path: Utf8PathBuf,
}

/// What `relman init` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    /// The deploy root.
    pub root: Utf8PathBuf,
    /// Paths it created (empty on a second run).
    pub created: Vec<Utf8PathBuf>,
    /// Files that existed and were left as they were.
    pub kept: Vec<Utf8PathBuf>,
    /// With `--app`: what kind of app the files were written for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// The ecosystem file's name in the deploy root.
pub const ECOSYSTEM_FILE: &str = "ecosystem.config.js";

/// How long a command waits for the root lock unless `RELMAN_LOCK_WAIT_SECS` says otherwise.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(300);

impl DeployRoot {
    /// Opens an existing directory as a deploy root.
    pub fn open(path: &Utf8Path) -> Result<DeployRoot> {
        let canonical = std::fs::canonicalize(path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!(
                    "deploy root `{path}` does not exist: create it, or pass `--root DIR`"
                ))
            } else {
                Error::io("failed to open deploy root", path, err)
            }
        })?;
        let path = crate::fs::utf8(canonical)?;
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "deploy root `{path}` is not a directory"
            )));
        }
        Ok(DeployRoot { path })
    }

    /// The root directory.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// `ROOT/releases`.
    pub fn releases_dir(&self) -> Utf8PathBuf {
        self.path.join("releases")
    }

    /// `ROOT/releases/ID`.
    pub fn release_dir(&self, id: &ReleaseId) -> Utf8PathBuf {
        self.releases_dir().join(id.as_str())
    }

    /// `ROOT/shared`.
    pub fn shared_dir(&self) -> Utf8PathBuf {
        self.path.join("shared")
    }

    /// `ROOT/current`.
    pub fn current_link(&self) -> Utf8PathBuf {
        self.path.join("current")
    }

    /// `ROOT/.relman`: relman's own state.
    pub fn state_dir(&self) -> Utf8PathBuf {
        self.path.join(".relman")
    }

    /// `ROOT/.relman/history.jsonl`.
    pub fn history_path(&self) -> Utf8PathBuf {
        self.state_dir().join("history.jsonl")
    }

    /// `ROOT/.relman/trash`: where `prune` moves a release before deleting it.
    pub(crate) fn trash_dir(&self) -> Utf8PathBuf {
        self.state_dir().join("trash")
    }

    /// Reads `ROOT/relman.toml`.
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.path)
    }

    /// Takes the root lock (a kernel lock on the root directory itself) for a mutating
    /// command, describing this process as `purpose` in `.relman/lock`.
    ///
    /// Waits up to `RELMAN_LOCK_WAIT_SECS` (default 300) for the holder to finish, calling
    /// `on_wait` once with the holder's description before it blocks.
    pub fn lock(&self, purpose: &str, on_wait: &mut dyn FnMut(&str)) -> Result<RootLock> {
        self.lock_or_cancel(purpose, &AtomicBool::new(false), on_wait)
    }

    /// [`DeployRoot::lock`] that gives up waiting, with nothing changed, once `cancel` is set
    /// (an operator's Ctrl-C).
    pub fn lock_or_cancel(
        &self,
        purpose: &str,
        cancel: &AtomicBool,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<RootLock> {
        let wait = std::env::var("RELMAN_LOCK_WAIT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_LOCK_WAIT, Duration::from_secs);
        let state = self.state_dir();
        if !state.is_dir() {
            crate::fs::create_dir_all(&state)?;
        }
        let holder = format!(
            "pid {} ({purpose}, since {})",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        lock_root(
            &self.path,
            &state.join("lock"),
            &holder,
            wait,
            cancel,
            on_wait,
        )
    }

    /// Whether a command holds the root lock now (a read: it takes nothing for longer than
    /// the asking).
    pub fn is_busy(&self) -> bool {
        crate::fs::lock::root_is_locked(&self.path)
    }

    /// The release `current` points to, or `None` before the first activation.
    pub fn current(&self) -> Result<Option<ReleaseId>> {
        let link = self.current_link();
        let target = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(Error::Malformed {
                    path: link,
                    message:
                        "it is not a symlink; relman manages `current` as a symlink to releases/ID"
                            .into(),
                });
            }
            Err(err) => return Err(Error::io("failed to read symlink", link, err)),
        };
        let target = crate::fs::utf8(target)?;
        let name = match target.strip_prefix("releases") {
            Ok(rest) if rest.components().count() == 1 => rest.as_str(),
            _ => {
                return Err(Error::Malformed {
                    path: link,
                    message: format!("it points to `{target}`, not to releases/ID"),
                });
            }
        };
        ReleaseId::parse(name).map(Some)
    }

    /// Creates the layout and a commented config; with `app`, the config has that app's keys
    /// set and an `ecosystem.config.js` is written beside it. Never overwrites a file: one
    /// that exists is listed as kept.
    ///
    /// Takes the root lock like every mutating command, calling `on_wait` with the holder's
    /// description before it blocks. A bad `--source` is refused before anything is created.
    pub fn init(
        path: &Utf8Path,
        app: Option<&AppSpec>,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<(DeployRoot, InitReport)> {
        let detected = match app {
            Some(AppSpec {
                source: Some(source),
                app_dir,
                ..
            }) => Some(Detected::of_source(source, app_dir.as_deref())?),
            Some(AppSpec {
                app_dir: Some(app_dir),
                ..
            }) => {
                crate::config::check_relative(app_dir.as_str()).map_err(|why| {
                    Error::Usage(format!("`--app-dir {app_dir}` {why}: give the app's path in the workspace, e.g. `apps/web`"))
                })?;
                Some(Detected::assumed())
            }
            Some(_) => Some(Detected::assumed()),
            None => None,
        };
        // The config names the source by its absolute path, whatever directory init ran in.
        let app = match app {
            Some(spec) => Some(AppSpec {
                source: match &spec.source {
                    Some(source) => Some(
                        source
                            .canonicalize_utf8()
                            .map_err(|err| Error::io("failed to resolve", source.clone(), err))?,
                    ),
                    None => None,
                },
                ..spec.clone()
            }),
            None => None,
        };
        let app = app.as_ref();
        let mut created = Vec::new();
        let mut kept = Vec::new();
        if !path.exists() {
            crate::fs::create_dir_all(path)?;
            created.push(path.to_owned());
        }
        let root = DeployRoot::open(path)?;
        if !root.state_dir().is_dir() {
            crate::fs::create_dir_all(&root.state_dir())?;
            created.push(root.state_dir());
        }
        let _lock = root.lock("relman init", on_wait)?;
        for dir in [root.releases_dir(), root.shared_dir()] {
            if !dir.is_dir() {
                crate::fs::create_dir_all(&dir)?;
                created.push(dir);
            }
        }
        let mut write = |file: Utf8PathBuf, contents: &str, mode: u32| -> Result<()> {
            if file.exists() || file.is_symlink() {
                kept.push(file);
            } else {
                crate::fs::create_new_with_mode(&file, contents.as_bytes(), mode)?;
                created.push(file);
            }
            Ok(())
        };
        let config_file = root.path.join(CONFIG_FILE);
        let next_server = root.path.join(NEXT_SERVER_FILE);
        // A Next.js app gets a Server Actions key, in both files or in neither: only when
        // both are written now.
        let actions_key = match (app, &detected) {
            (Some(_), Some(detected))
                if detected.kind == AppKind::Next
                    && !config_file.exists()
                    && !root.ecosystem_file().exists() =>
            {
                Some(scaffold::actions_key()?)
            }
            _ => None,
        };
        // A file that holds the key is the owner's alone.
        let mode = if actions_key.is_some() { 0o600 } else { 0o644 };
        let config = match (app, &detected) {
            (Some(app), Some(detected)) => scaffold::render_config(
                TEMPLATE,
                &scaffold::config_keys(app, detected, &next_server, actions_key.as_deref()),
            ),
            _ => TEMPLATE.to_owned(),
        };
        write(config_file, &config, mode)?;
        if let (Some(app), Some(detected)) = (app, &detected) {
            let ecosystem = scaffold::render_ecosystem(
                app,
                detected,
                &root.current_link(),
                &next_server,
                actions_key.as_deref(),
            );
            write(root.ecosystem_file(), &ecosystem, mode)?;
            if detected.kind == AppKind::Next {
                write(next_server, scaffold::NEXT_SERVER, 0o644)?;
            }
        }
        crate::fs::sync_dir(&root.path)?;
        let report = InitReport {
            root: root.path.clone(),
            created,
            kept,
            app: detected.map(|d| {
                let described = d.describe();
                match app.and_then(|a| a.app_dir.as_ref()) {
                    Some(app_dir) => format!("{described}, in `{app_dir}` of a workspace"),
                    None => described,
                }
            }),
        };
        Ok((root, report))
    }

    /// `ROOT/ecosystem.config.js`, where `init --app` writes PM2's ecosystem file and the first
    /// activation starts the app from (unless `pm2.ecosystem` names another).
    pub fn ecosystem_file(&self) -> Utf8PathBuf {
        self.path.join(ECOSYSTEM_FILE)
    }

    /// Fails unless `releases/` exists, telling the operator to run `relman init`.
    pub fn require_initialised(&self) -> Result<()> {
        let releases = self.releases_dir();
        if releases.is_dir() {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "`{releases}` does not exist: run `relman init --root {}` first",
                self.path
            )))
        }
    }

    /// Size in bytes of everything under `dir`, symlinks not followed.
    pub(crate) fn tree_bytes(dir: &Utf8Path) -> u64 {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}
