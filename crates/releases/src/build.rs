//! `relman build`: a new release in a fresh directory, sealed only when every step succeeded.
//!
//! The steps are separate functions with a timing each, so that a failure, a crash or Ctrl-C
//! at any point leaves an unsealed directory that reads as `failed` and that `prune` removes.
//! Only relman seals: the claim written first stays until the manifest is on disk, and a seal
//! counts only once the claim is gone, so a seal a build command writes never does (and relman
//! removes it). Nothing here touches `current` or any other release.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use chrono::Utc;
use serde::Serialize;

use crate::config::{Config, Reuse};
use crate::error::{Error, IoContext, Result};
use crate::fs::copy::{CopyStats, Exclude, Place, copy_tree, place_tree};
use crate::fs::lock::BuildLock;
use crate::id::ReleaseId;
use crate::manifest;
use crate::record::{
    CLAIM_FILE, CLAIM_VERSION, Claim, LOCK_FILE, LOG_FILE, MANIFEST_FILE, META_DIR, SEAL_FILE,
    Seal, Source,
};
use crate::root::DeployRoot;
use crate::run::{self, Failure, LogSink};
use crate::store::{self, State};

/// Where to build from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// Copy this directory.
    Dir(Utf8PathBuf),
    /// Clone this repository and check out the ref (default: the remote's default branch).
    Git {
        /// The repository URL.
        url: String,
        /// The ref.
        reference: Option<String>,
    },
}

/// What `relman build` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The source; `None` uses `source.path` or `source.git` from the config.
    pub source: Option<SourceSpec>,
    /// The ID; `None` uses the UTC timestamp.
    pub id: Option<ReleaseId>,
    /// Always run the install command.
    pub no_reuse: bool,
}

/// What a build tells its caller while it runs.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// Another relman holds the root lock; this build waits.
    Waiting(&'a str),
    /// The ID is claimed and the directory exists.
    Claimed(&'a ReleaseId, &'a Utf8Path),
    /// A step begins.
    Step(&'a str),
    /// Output of a build command.
    Output(&'a [u8]),
}

/// A sealed build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The new release.
    pub id: ReleaseId,
    /// Always `sealed`.
    pub state: State,
    /// Whether `node_modules` was copied from the newest sealed release.
    pub reused_node_modules: bool,
    /// The release whose Next.js build cache (`.next/cache`) the build started from.
    pub warm_cache_from: Option<ReleaseId>,
    /// Milliseconds per step.
    pub durations_ms: BTreeMap<String, u64>,
    /// Files in the manifest.
    pub files: u64,
    /// Bytes of the release directory.
    pub bytes: u64,
    /// The release directory.
    pub dir: Utf8PathBuf,
}

/// Lockfiles whose hash decides whether `node_modules` can be reused.
const LOCKFILES: [&str; 4] = [
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
];

/// Entry names never copied from a source.
const ALWAYS_EXCLUDED: [&str; 4] = [".git", "node_modules", ".next", ".relman"];

/// Builds a new release. `cancel` is polled throughout; setting it kills the running command
/// and leaves the release unsealed.
pub fn build(
    root: &DeployRoot,
    request: &BuildRequest,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<BuildReport> {
    let started = Instant::now();
    root.require_initialised()?;
    let config = root.config()?;
    let source = resolve_source(root, request, &config)?;
    check_shared(root, &config)?;
    if let SourceSpec::Dir(dir) = &source {
        check_shared_in_source(dir, &config)?;
        if !crate::fs::real_dir(dir, &config.source.app_dir) {
            return Err(Error::Usage(app_dir_missing(&config, dir)));
        }
    }
    if let Some(id) = &request.id
        && root.release_dir(id).exists()
    {
        return Err(Error::IdTaken(id.to_string()));
    }

    let created_at = Utc::now();
    let (id, _build_lock) = claim(
        root,
        "relman build",
        request.id.as_ref(),
        created_at,
        cancel,
        &mut |holder| events(BuildEvent::Waiting(holder)),
    )?;
    let dir = root.release_dir(&id);
    events(BuildEvent::Claimed(&id, &dir));
    crate::failpoint::hit("build-after-claim");

    let log_path = dir.join(META_DIR).join(LOG_FILE);
    let mut log = LogSink::new(crate::fs::open_append(&log_path)?);
    let mut builder = Builder {
        root,
        config: &config,
        id: &id,
        dir: &dir,
        cancel,
        deadline: Instant::now() + Duration::from_secs(config.build.timeout_secs),
        durations: BTreeMap::new(),
        log: &mut log,
        events,
    };
    match builder.run(&source, request, created_at) {
        Ok(mut report) => {
            report
                .durations_ms
                .insert("total".into(), millis(started.elapsed()));
            Ok(report)
        }
        Err(err) => {
            log.write(format!("\nrelman: {err}\n").as_bytes());
            // A seal or manifest left now is not a finished build's: whoever wrote it (a
            // build command, or relman before a failed fsync), it must not be mistaken for one.
            if let Err(cleanup) = remove_seal_files(&dir) {
                log.write(format!("relman: {cleanup}\n").as_bytes());
            }
            log.sync();
            Err(match err {
                Error::Interrupted(_) => err,
                other => Error::BuildFailed {
                    id: id.to_string(),
                    message: other.to_string(),
                    log: log_path,
                    tail: log.tail(20),
                },
            })
        }
    }
}

/// Turns flags and config into one validated source.
fn resolve_source(
    root: &DeployRoot,
    request: &BuildRequest,
    config: &Config,
) -> Result<SourceSpec> {
    let source = match &request.source {
        Some(source) => source.clone(),
        // A relative `source.path` is relative to the deploy root, not to wherever relman runs.
        None if !config.source.path.is_empty() => {
            SourceSpec::Dir(root.path().join(&config.source.path))
        }
        None if !config.source.git.is_empty() => SourceSpec::Git {
            url: config.source.git.clone(),
            reference: (!config.source.reference.is_empty())
                .then(|| config.source.reference.clone()),
        },
        None => {
            return Err(Error::Usage(
                "no source to build: pass `--source DIR` or `--git URL`, or set `source.path` in relman.toml".into(),
            ));
        }
    };
    match source {
        SourceSpec::Dir(path) => {
            let canonical = std::fs::canonicalize(&path).map_err(|err| {
                Error::Usage(format!(
                    "cannot read source `{path}`: {err}; pass an existing directory"
                ))
            })?;
            let canonical = crate::fs::utf8(canonical)?;
            if !canonical.is_dir() {
                return Err(Error::Usage(format!("source `{path}` is not a directory")));
            }
            std::fs::read_dir(&canonical)
                .map_err(|err| Error::Usage(format!("cannot read source `{path}`: {err}")))?;
            if canonical.starts_with(root.path()) {
                return Err(Error::Usage(format!(
                    "source `{path}` is inside the deploy root `{}`: build from a checkout outside it",
                    root.path()
                )));
            }
            if root.path().starts_with(&canonical) {
                return Err(Error::Usage(format!(
                    "the deploy root `{}` is inside the source `{path}`: the copy would include every release; move one of them",
                    root.path()
                )));
            }
            Ok(SourceSpec::Dir(canonical))
        }
        SourceSpec::Git { url, reference } => {
            if url.is_empty() || url.starts_with('-') || url.contains(['\n', '\0']) {
                return Err(Error::Usage(format!(
                    "invalid git URL \"{}\"",
                    url.escape_debug()
                )));
            }
            if let Some(r) = &reference
                && (r.is_empty() || r.starts_with('-') || r.contains(['\n', '\0', ' ']))
            {
                return Err(Error::Usage(format!(
                    "invalid git ref \"{}\"",
                    r.escape_debug()
                )));
            }
            Ok(SourceSpec::Git { url, reference })
        }
    }
}

pub(crate) fn check_shared(root: &DeployRoot, config: &Config) -> Result<()> {
    for path in config.shared_paths() {
        let shared = root.shared_dir().join(&path);
        if std::fs::symlink_metadata(&shared).is_err() {
            return Err(Error::Usage(format!(
                "shared path `{path}` is missing: create `{shared}` (it is linked into every release)"
            )));
        }
    }
    Ok(())
}

/// Refuses a `shared.paths` entry below a symlink of the source.
///
/// The copy keeps the source's symlinks, so linking `public/uploads` into a release whose
/// `public` came from the source as `public -> ../live` would replace the live release's
/// uploads (or a directory outside the root, or a file in `shared/`) with the link. A `--git`
/// source is only known after the checkout; [`link_shared_path`] refuses it there.
fn check_shared_in_source(source: &Utf8Path, config: &Config) -> Result<()> {
    let exclude = exclude(config);
    for path in config.shared_paths() {
        let Some(parent) = path.parent() else {
            continue;
        };
        let mut prefix = Utf8PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if exclude.skips(&prefix) {
                // Not copied: whatever the source has there never reaches the release.
                break;
            }
            let in_source = source.join(&prefix);
            match std::fs::symlink_metadata(&in_source) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = std::fs::read_link(&in_source)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    return Err(Error::Usage(format!(
                        "shared path `{path}` goes through `{prefix}`, a symlink in the source (`{in_source}` -> `{target}`): make `{prefix}` a directory in the source, or remove `{path}` from `shared.paths`"
                    )));
                }
                Ok(meta) if meta.is_dir() => {}
                // Missing (created by the link step) or not a directory (the link step fails).
                _ => break,
            }
        }
    }
    Ok(())
}

/// What a copy from a source leaves out.
fn exclude(config: &Config) -> Exclude {
    Exclude {
        names: ALWAYS_EXCLUDED.iter().map(|s| (*s).to_owned()).collect(),
        paths: config
            .source
            .exclude
            .iter()
            .map(Utf8PathBuf::from)
            .collect(),
    }
}

/// Takes the root lock just long enough to pick an ID, create its directory and lock it
/// (`relman build`, and `relman receive` with the ID of the release it receives). The
/// lock's note names `purpose`; `on_wait` hears who holds it before this process waits.
pub(crate) fn claim(
    root: &DeployRoot,
    purpose: &str,
    wanted: Option<&ReleaseId>,
    created_at: chrono::DateTime<Utc>,
    cancel: &AtomicBool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<(ReleaseId, BuildLock)> {
    let _root_lock = root.lock_or_cancel(purpose, cancel, on_wait)?;
    let candidates: Box<dyn Iterator<Item = ReleaseId>> = match wanted {
        Some(id) => Box::new(std::iter::once(id.clone())),
        None => Box::new(ReleaseId::candidates(created_at).take(1000)),
    };
    for id in candidates {
        let dir = root.release_dir(&id);
        match crate::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                if wanted.is_some() {
                    return Err(Error::IdTaken(id.to_string()));
                }
                continue;
            }
            Err(err) => return Err(Error::io("failed to create directory", dir, err)),
        }
        let meta = dir.join(META_DIR);
        crate::fs::create_dir_all(&meta)?;
        let lock = BuildLock::acquire(&meta.join(LOCK_FILE))?;
        let claim = Claim {
            id: id.clone(),
            created_at,
            pid: std::process::id(),
            version: CLAIM_VERSION,
        };
        let text = serde_json::to_vec(&claim).expect("a claim always serialises");
        crate::fs::create_new(&meta.join(CLAIM_FILE), &text)?;
        crate::fs::sync_dir(&root.releases_dir())?;
        return Ok((id, lock));
    }
    Err(Error::Build("could not find a free release ID".into()))
}

/// What the running app writes under `.next/cache`: never carried into another build.
const RUNTIME_CACHES: [&str; 2] = ["images", "fetch-cache"];

/// The version of Next.js installed in `dir`, from `node_modules/next/package.json`.
fn next_version(release: &Utf8Path, app: &Utf8Path) -> Option<String> {
    // The app's own `node_modules` first (pnpm links it there), then the workspace's (where
    // npm and yarn hoist it).
    let text = [app, release]
        .iter()
        .find_map(|dir| std::fs::read_to_string(dir.join("node_modules/next/package.json")).ok())?;
    let package: serde_json::Value = serde_json::from_str(&text).ok()?;
    package["version"].as_str().map(str::to_owned)
}

struct Builder<'a> {
    root: &'a DeployRoot,
    config: &'a Config,
    id: &'a ReleaseId,
    dir: &'a Utf8Path,
    cancel: &'a AtomicBool,
    deadline: Instant,
    durations: BTreeMap<String, u64>,
    log: &'a mut LogSink,
    events: &'a mut dyn FnMut(BuildEvent<'_>),
}

impl Builder<'_> {
    fn run(
        &mut self,
        source: &SourceSpec,
        request: &BuildRequest,
        created_at: chrono::DateTime<Utc>,
    ) -> Result<BuildReport> {
        let (record_source, revision) = self.timed("copy", |b| b.fill(source))?;
        crate::failpoint::hit("build-after-copy");
        self.timed("link", |b| b.link_shared())?;
        if !crate::fs::real_dir(self.dir, &self.config.source.app_dir) {
            // A `--git` source, only known now (a directory source is checked before the claim).
            return Err(Error::Build(app_dir_missing(self.config, self.dir)));
        }

        let lockfile_hash = LOCKFILES
            .iter()
            .map(|name| self.dir.join(name))
            .find(|path| path.is_file())
            .map(|path| manifest::hash_hex(&path))
            .transpose()?;
        let host = crate::platform::Host::detect(run::capture("node", &["--version"], None));
        let node_version = host.node_version.clone();
        let reuse = self.config.build.reuse_node_modules;
        let installs = !self.config.build.install.is_empty();
        let links = installs && reuse.links(running_as_root());
        let place = match reuse {
            Reuse::Copy => Place::Copy,
            _ => Place::Share { links },
        };
        let reused = reuse != Reuse::Off
            && installs
            && !request.no_reuse
            && self.timed("reuse", |b| {
                b.reuse_node_modules(lockfile_hash.as_deref(), node_version.as_deref(), place)
            })?;
        if !reused {
            let install = self.config.build.install.clone();
            self.timed("install", |b| b.shell("install", &install))?;
        }
        crate::failpoint::hit("build-after-install");
        let warm_cache_from = if request.no_reuse {
            None
        } else {
            self.timed("cache", |b| b.carry_build_cache(lockfile_hash.as_deref()))?
        };
        let command = self.config.build.command.clone();
        self.timed("build", |b| b.shell("build", &command))?;
        crate::failpoint::hit("build-after-build");
        self.timed("check", |b| b.check_expected())?;
        if links {
            self.timed("protect", |b| b.protect_node_modules())?;
        }
        self.timed("static", |b| b.carry_static())?;
        if let Some(standalone) = self.standalone() {
            self.timed("standalone", |b| b.fill_standalone(&standalone))?;
        }
        let (manifest, bytes) = self.timed("manifest", |b| b.write_manifest())?;
        crate::failpoint::hit("build-after-manifest");

        let durations = self.durations.clone();
        let seal = Seal {
            id: self.id.clone(),
            created_at,
            sealed_at: Utc::now(),
            source: record_source,
            revision,
            lockfile_hash,
            node_version,
            platform: Some(host.platform),
            arch: Some(host.arch),
            reused_node_modules: reused,
            warm_cache_from: warm_cache_from.clone(),
            durations_ms: durations,
            manifest_exclude: Some(self.config.manifest_exclude()),
            manifest_runtime: Some(self.config.manifest_runtime()),
            files: manifest.files.len() as u64,
            bytes,
        };
        self.timed("seal", |b| b.seal(&seal))?;
        crate::failpoint::hit("build-after-seal");
        Ok(BuildReport {
            id: self.id.clone(),
            state: State::Sealed,
            reused_node_modules: reused,
            warm_cache_from,
            durations_ms: self.durations.clone(),
            files: seal.files,
            bytes,
            dir: self.dir.to_owned(),
        })
    }

    fn timed<T>(&mut self, step: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted(self.id.to_string()));
        }
        (self.events)(BuildEvent::Step(step));
        self.log.write(format!("relman: step {step}\n").as_bytes());
        let started = Instant::now();
        let value = f(self)?;
        self.durations
            .insert(step.to_owned(), millis(started.elapsed()));
        Ok(value)
    }

    fn exclude(&self) -> Exclude {
        exclude(self.config)
    }

    fn fill(&mut self, source: &SourceSpec) -> Result<(Source, Option<String>)> {
        match source {
            SourceSpec::Dir(path) => {
                let stats = copy_tree(path, self.dir, &self.exclude())?;
                self.log_copy("the source", stats);
                let revision = path
                    .join(".git")
                    .exists()
                    .then(|| run::capture("git", &["rev-parse", "HEAD"], Some(path)))
                    .flatten();
                Ok((Source::Dir { path: path.clone() }, revision))
            }
            SourceSpec::Git { url, reference } => {
                let checkout = self
                    .root
                    .state_dir()
                    .join("tmp")
                    .join(format!("git-{}", self.id));
                crate::fs::remove_any(&checkout)?;
                crate::fs::create_dir_all(checkout.parent().expect("tmp has a parent"))?;
                let result = self.checkout(url, reference.as_deref(), &checkout);
                let cleanup = crate::fs::remove_any(&checkout);
                let revision = result?;
                cleanup?;
                Ok((
                    Source::Git {
                        url: url.clone(),
                        reference: reference.clone(),
                    },
                    Some(revision),
                ))
            }
        }
    }

    fn checkout(
        &mut self,
        url: &str,
        reference: Option<&str>,
        checkout: &Utf8Path,
    ) -> Result<String> {
        let mut clone = Command::new("git");
        clone.args(["clone", "--quiet", "--", url, checkout.as_str()]);
        self.command("git clone", clone)?;
        if let Some(reference) = reference {
            let mut switch = Command::new("git");
            switch
                .args([
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    "--detach",
                    reference,
                    "--",
                ])
                .current_dir(checkout);
            self.command("git checkout", switch)?;
        }
        let revision =
            run::capture("git", &["rev-parse", "HEAD"], Some(checkout)).ok_or_else(|| {
                Error::Build("git rev-parse HEAD failed in the fresh checkout".into())
            })?;
        let stats = copy_tree(checkout, self.dir, &self.exclude())?;
        self.log_copy("the checkout", stats);
        Ok(revision)
    }

    fn log_copy(&mut self, what: &str, stats: CopyStats) {
        let shared = match (stats.cloned, stats.linked) {
            (0, 0) => String::new(),
            (cloned, 0) => format!(" ({cloned} cloned)"),
            (0, linked) => format!(" ({linked} hard-linked)"),
            (cloned, linked) => format!(" ({cloned} cloned, {linked} hard-linked)"),
        };
        self.log.write(
            format!(
                "relman: copied {what}: {} files, {} bytes{shared}\n",
                stats.files, stats.bytes
            )
            .as_bytes(),
        );
    }

    fn link_shared(&mut self) -> Result<()> {
        for path in self.config.shared_paths() {
            link_shared_path(self.dir, &path)?;
        }
        Ok(())
    }

    fn reuse_node_modules(
        &mut self,
        lockfile_hash: Option<&str>,
        node_version: Option<&str>,
        place: Place,
    ) -> Result<bool> {
        let (Some(lockfile_hash), Some(node_version)) = (lockfile_hash, node_version) else {
            return Ok(false);
        };
        let releases = store::releases(self.root)?;
        let Some(newest) = releases.iter().find(|r| r.state == State::Sealed) else {
            return Ok(false);
        };
        let Some(seal) = &newest.seal else {
            return Ok(false);
        };
        if seal.lockfile_hash.as_deref() != Some(lockfile_hash)
            || seal.node_version.as_deref() != Some(node_version)
            || !crate::fs::real_dir(&newest.dir, "node_modules")
        {
            return Ok(false);
        }
        // The workspace's and, in a workspace, each package's (pnpm links a package's
        // dependencies in its own `node_modules`): every one the install made.
        let dirs = node_modules_dirs(&newest.dir)?;
        if dirs.iter().any(|dir| {
            dir.parent()
                .is_some_and(|parent| !crate::fs::real_dir(self.dir, parent.as_str()))
        }) {
            // This source has not the same packages where that release had them.
            return Ok(false);
        }
        for dir in &dirs {
            let to = self.dir.join(dir);
            crate::fs::create_dir(&to).at("failed to create directory", &to)?;
            let stats = place_tree(&newest.dir.join(dir), &to, &Exclude::default(), place)?;
            self.log_copy(dir.as_str(), stats);
        }
        self.log
            .write(format!("relman: node_modules from release {}\n", newest.id).as_bytes());
        Ok(true)
    }

    /// Takes the write bits off every file in this release's `node_modules` directories
    /// (`.cache` directories aside), so that a later release can hard-link them: nobody but
    /// root can then write into a file two releases share. Directories stay writable, so a
    /// package can still add files, or replace one by renaming, in its own release.
    fn protect_node_modules(&mut self) -> Result<()> {
        let mut files = 0;
        for dir in node_modules_dirs(self.dir)? {
            files += crate::fs::copy::remove_write_bits(&self.dir.join(dir))?;
        }
        self.log.write(
            format!("relman: made {files} files in node_modules read-only, to be shared\n")
                .as_bytes(),
        );
        Ok(())
    }

    /// Next.js's build cache (`.next/cache`) of the newest sealed release, copied into this one
    /// before the build when both have the same lockfile and the same Next.js, so `next build`
    /// starts warm. Only what `next build` wrote there is carried: the caches the running app
    /// writes (`images`, `fetch-cache`) stay behind. Returns the release it came from.
    fn carry_build_cache(&mut self, lockfile_hash: Option<&str>) -> Result<Option<ReleaseId>> {
        let Some(lockfile_hash) = lockfile_hash else {
            return Ok(None);
        };
        let Some(next) = next_version(self.dir, &self.config.app_in(self.dir)) else {
            return Ok(None);
        };
        let releases = store::releases(self.root)?;
        let Some(newest) = releases.iter().find(|r| r.state == State::Sealed) else {
            return Ok(None);
        };
        let from = self.config.app_in(&newest.dir).join(".next/cache");
        let same = newest
            .seal
            .as_ref()
            .is_some_and(|seal| seal.lockfile_hash.as_deref() == Some(lockfile_hash))
            && next_version(&newest.dir, &self.config.app_in(&newest.dir)).as_deref()
                == Some(next.as_str());
        if !same || !from.is_dir() || from.is_symlink() {
            return Ok(None);
        }
        let to = self.config.app_in(self.dir).join(".next/cache");
        if to.exists() || to.is_symlink() {
            // The source brought its own (a `.next` it should not have): leave it be.
            return Ok(None);
        }
        crate::fs::create_dir_all(&to)?;
        let exclude = Exclude {
            names: Vec::new(),
            paths: RUNTIME_CACHES.iter().map(Utf8PathBuf::from).collect(),
        };
        let stats = copy_tree(&from, &to, &exclude)?;
        self.log_copy("the Next.js build cache", stats);
        self.log.write(
            format!(
                "relman: carried .next/cache from release {} (next {next})\n",
                newest.id
            )
            .as_bytes(),
        );
        Ok(Some(newest.id.clone()))
    }

    /// Skew protection: the `.next/static` files of the `build.static_from` newest sealed
    /// releases, added to this one where it lacks them (never replacing its own). Once this
    /// release is live, a browser tab still on an older one asks it for that release's chunks
    /// and gets them, instead of a 404 that breaks its next navigation.
    fn carry_static(&mut self) -> Result<()> {
        let to = self.dir.join(self.config.in_app(".next/static"));
        let limit = self.config.build.static_from;
        if limit == 0 || !crate::fs::real_dir(self.dir, &self.config.in_app(".next/static")) {
            return Ok(());
        }
        let releases = store::releases(self.root)?;
        let mut total = crate::fs::copy::CopyStats::default();
        let mut from_ids = Vec::new();
        for release in releases
            .iter()
            .filter(|r| r.state == State::Sealed && r.id != *self.id)
            .take(limit)
        {
            let from = self.config.app_in(&release.dir).join(".next/static");
            if !std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let stats = crate::fs::copy::add_missing(&from, &to)?;
            total.files += stats.files;
            total.bytes += stats.bytes;
            from_ids.push(release.id.to_string());
        }
        if !from_ids.is_empty() {
            self.log.write(
                format!(
                    "relman: added {} static files ({} bytes) of {} that this build lacks\n",
                    total.files,
                    total.bytes,
                    from_ids.join(", ")
                )
                .as_bytes(),
            );
        }
        Ok(())
    }

    /// Where an `output: 'standalone'` build put the app's server, relative to the release:
    /// `.next/standalone` of the app, and below it the app's path in its workspace
    /// (`relativeAppDir` of the build's `required-server-files.json`) when there is one.
    /// `None` when the build is not a standalone one.
    fn standalone(&self) -> Option<String> {
        let files = self
            .dir
            .join(self.config.in_app(".next/required-server-files.json"));
        let text = std::fs::read_to_string(files).ok();
        let relative = text
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| json["relativeAppDir"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut dir = self.config.in_app(STANDALONE);
        if !relative.is_empty() {
            crate::config::check_relative(&relative).ok()?;
            dir = format!("{dir}/{relative}");
        }
        (crate::fs::real_dir(self.dir, &dir) && self.dir.join(&dir).join("server.js").is_file())
            .then_some(dir)
    }

    /// An `output: 'standalone'` build serves from `.next/standalone`, where `next build` puts
    /// the server and the modules it traced but not the files it serves as they are: they go
    /// where Next.js looks for them there, as links to the release's own (`public`, and
    /// `.next/static` with the older releases' files just added), so nothing is stored twice.
    /// What the build command already put there is kept, and given the static files it lacks.
    /// `standalone` is the server's directory relative to the release, a real directory.
    fn fill_standalone(&mut self, standalone: &str) -> Result<()> {
        // From the server's directory back up to the app's: `.next/standalone` and the app's
        // path in its workspace.
        let depth = Utf8Path::new(standalone).components().count()
            - Utf8Path::new(&self.config.source.app_dir)
                .components()
                .count();
        let up = "../".repeat(depth);
        let server = self.dir.join(standalone);
        let static_dir = self.config.in_app(".next/static");
        let mut said = Vec::new();
        if crate::fs::real_dir(self.dir, &format!("{standalone}/.next"))
            && crate::fs::real_dir(self.dir, &static_dir)
        {
            let to = server.join(".next/static");
            match std::fs::symlink_metadata(&to) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    // One level further down: from `.next/` of the server.
                    crate::fs::symlink(Utf8Path::new(&format!("../{up}.next/static")), &to)?;
                    said.push(format!("linked {standalone}/.next/static to {static_dir}"));
                }
                Ok(meta) if meta.is_dir() => {
                    let stats = crate::fs::copy::add_missing(&self.dir.join(&static_dir), &to)?;
                    said.push(format!(
                        "added {} files of {static_dir} to the build's {standalone}/.next/static",
                        stats.files
                    ));
                }
                Ok(_) => said.push(format!("kept the build's {standalone}/.next/static")),
                Err(err) => return Err(Error::io("failed to inspect", to, err)),
            }
        }
        let public = self.config.in_app("public");
        if std::fs::symlink_metadata(self.dir.join(&public)).is_ok() {
            let to = server.join("public");
            match std::fs::symlink_metadata(&to) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    crate::fs::symlink(Utf8Path::new(&format!("{up}public")), &to)?;
                    said.push(format!("linked {standalone}/public to {public}"));
                }
                Ok(_) => said.push(format!("kept the build's {standalone}/public")),
                Err(err) => return Err(Error::io("failed to inspect", to, err)),
            }
        }
        for line in said {
            self.log.write(format!("relman: {line}\n").as_bytes());
        }
        Ok(())
    }

    fn shell(&mut self, what: &str, script: &str) -> Result<()> {
        if script.is_empty() {
            self.log
                .write(format!("relman: {what} command is empty, skipped\n").as_bytes());
            return Ok(());
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .current_dir(self.dir)
            .env("RELMAN_RELEASE", self.id.as_str())
            .env("RELMAN_ROOT", self.root.path())
            // Next.js's deployment id: a tab whose release is no longer live reloads fully on
            // its next navigation instead of mixing two releases (`build.env` may override).
            .env("NEXT_DEPLOYMENT_ID", self.id.as_str())
            .envs(&self.config.build.env);
        self.command(&format!("{what} command `{script}`"), command)
    }

    fn command(&mut self, what: &str, command: Command) -> Result<()> {
        let log = &mut *self.log;
        let events = &mut *self.events;
        let result = run::run(command, self.deadline, self.cancel, &mut |chunk| {
            log.write(chunk);
            events(BuildEvent::Output(chunk));
        });
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Exit(how)) => Err(Error::Build(format!("{what} {how}"))),
            Err(Failure::Timeout) => Err(Error::Build(format!(
                "{what} was killed: the build ran past `build.timeout_secs` ({} s)",
                self.config.build.timeout_secs
            ))),
            Err(Failure::Cancelled) => Err(Error::Interrupted(self.id.to_string())),
            Err(Failure::Error(err)) => Err(err),
        }
    }

    fn check_expected(&mut self) -> Result<()> {
        let missing: Vec<&str> = self
            .config
            .build
            .expect
            .iter()
            .filter(|p| !self.config.app_in(self.dir).join(p.as_str()).exists())
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Build(format!(
                "the build succeeded but expected outputs are missing: {}; check `build.command` and `build.expect`",
                missing.join(", ")
            )))
        }
    }

    fn write_manifest(&mut self) -> Result<(manifest::Manifest, u64)> {
        // The build commands are done: a seal or manifest in `.relman/` now is theirs.
        remove_seal_files(self.dir)?;
        let exclude = self.config.manifest_exclude();
        let (manifest, meta) = manifest::compute(self.dir, &exclude)?;
        crate::fs::create_new(
            &manifest::manifest_path(self.dir),
            manifest.render().as_bytes(),
        )?;
        manifest::write_meta(self.dir, &meta)?;
        let bytes = DeployRoot::tree_bytes(self.dir);
        Ok((manifest, bytes))
    }

    fn seal(&mut self, seal: &Seal) -> Result<()> {
        let text = serde_json::to_vec_pretty(seal).expect("a seal always serialises");
        seal_release(self.dir, &text)
    }
}

/// Seals a claimed release whose files and manifest are all written: `text` is its
/// `release.json`. Shared by `build` and `receive`, so a release reads sealed the same way
/// whichever made it.
pub(crate) fn seal_release(dir: &Utf8Path, text: &[u8]) -> Result<()> {
    // Everything written, the manifest included, reaches the disk before the claim goes; the
    // claim is gone for good before the seal is written. A crash in between leaves neither,
    // which reads as failed.
    crate::fs::sync_filesystem(dir)?;
    let meta = dir.join(META_DIR);
    crate::fs::remove_file(&meta.join(CLAIM_FILE))?;
    crate::fs::sync_dir(&meta)?;
    crate::failpoint::hit("build-after-unclaim");
    crate::fs::atomic_write(&meta.join(SEAL_FILE), text)
}

/// Removes the seal and the manifest of an unsealed release, durably.
fn remove_seal_files(release: &Utf8Path) -> Result<()> {
    let meta = release.join(META_DIR);
    // The build commands could have replaced `.relman/` itself: never write through a symlink.
    match std::fs::symlink_metadata(&meta) {
        Ok(found) if found.is_dir() => {}
        Ok(_) => {
            return Err(Error::Build(format!(
                "`{meta}` is no longer a directory: the build commands must leave `.relman/` alone"
            )));
        }
        Err(err) => return Err(Error::io("failed to inspect", meta, err)),
    }
    crate::fs::remove_file(&meta.join(SEAL_FILE))?;
    crate::fs::remove_file(&meta.join(MANIFEST_FILE))?;
    crate::fs::sync_dir(&meta)
}

/// Replaces `path` in the release with a relative symlink into `ROOT/shared/`, writing nothing
/// outside `release`: no symlink is followed, neither to the entry nor through its parents
/// (which come from the source and could point into the live release, `shared/` or anywhere).
pub(crate) fn link_shared_path(release: &Utf8Path, path: &Utf8Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Utf8Path::new(""));
    let mut dir = release.to_owned();
    for component in parent.components() {
        dir.push(component);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let what = if meta.file_type().is_symlink() {
                    "is a symlink"
                } else {
                    "is not a directory"
                };
                return Err(Error::Build(format!(
                    "cannot link shared path `{path}`: `{dir}` {what}; make it a directory in the source, or remove `{path}` from `shared.paths`"
                )));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // `mkdir` of the last component only: a symlink put there since is refused.
                crate::fs::create_dir(&dir).at("failed to create directory", &dir)?;
            }
            Err(err) => return Err(Error::io("failed to inspect", dir, err)),
        }
    }
    let link = release.join(path);
    // Every parent is a real directory inside the release, and `remove_any` does not follow
    // `link` itself when it is a symlink.
    crate::fs::remove_any(&link)?;
    // From ROOT/releases/ID/a/b the way up to ROOT is one `..` per directory below it.
    let depth = 2 + path.components().count() - 1;
    let mut target = Utf8PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("shared");
    target.push(path);
    crate::fs::symlink(&target, &link)
}

fn app_dir_missing(config: &Config, source: &Utf8Path) -> String {
    format!(
        "`source.app_dir` \"{}\" is not a directory in `{source}` (a symlink is not followed): set it to the app's directory in the workspace",
        config.source.app_dir
    )
}

/// Every `node_modules` directory of `release` outside the others (relative paths): the one at
/// its root and those of a workspace's packages. Nothing below `.git`, `.next` or `.relman`.
fn node_modules_dirs(release: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut found = Vec::new();
    let mut walk = walkdir::WalkDir::new(release)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|err| crate::fs::copy::walk_error(release, err))?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let name = entry.file_name();
        if name == "node_modules" {
            let relative = entry.path().strip_prefix(release).expect("walked below it");
            found.push(crate::fs::utf8(relative.to_path_buf())?);
            walk.skip_current_dir();
        } else if name == ".git" || name == ".next" || name == crate::record::META_DIR {
            walk.skip_current_dir();
        }
    }
    Ok(found)
}

/// Whether relman runs as root, whom file modes do not stop.
fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Where `next build` writes an `output: 'standalone'` server.
const STANDALONE: &str = ".next/standalone";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    fn listing(dir: &Utf8Path) -> Vec<String> {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .map(|e| e.unwrap().path().display().to_string())
            .collect()
    }

    #[test]
    fn linking_a_shared_path_never_follows_a_symlink_out_of_the_release() {
        let (_guard, base) = temp_dir();
        let outside = base.join("outside");
        std::fs::create_dir_all(outside.join("uploads")).unwrap();
        std::fs::write(outside.join("uploads/keep.png"), "keep").unwrap();
        let before = listing(&outside);

        // A parent that is a symlink (as a `--git` checkout can bring): refused.
        let release = base.join("releases/next");
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(&outside, release.join("public")).unwrap();
        let err = link_shared_path(&release, Utf8Path::new("public/uploads")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`public/uploads`") && message.contains("is a symlink"),
            "{message}"
        );
        assert_eq!(listing(&outside), before);
        assert!(outside.join("uploads/keep.png").is_file());

        // The entry itself a symlink: only the link goes.
        let release = base.join("releases/other");
        std::fs::create_dir_all(release.join("public")).unwrap();
        std::os::unix::fs::symlink(outside.join("uploads"), release.join("public/uploads"))
            .unwrap();
        link_shared_path(&release, Utf8Path::new("public/uploads")).unwrap();
        assert_eq!(listing(&outside), before);
        assert_eq!(
            std::fs::read_link(release.join("public/uploads")).unwrap(),
            std::path::Path::new("../../../shared/public/uploads")
        );

        // Missing parents are made as real directories.
        link_shared_path(&release, Utf8Path::new("a/b/c")).unwrap();
        assert!(
            std::fs::symlink_metadata(release.join("a/b"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            std::fs::read_link(release.join("a/b/c")).unwrap(),
            std::path::Path::new("../../../../shared/a/b/c")
        );
    }
}
