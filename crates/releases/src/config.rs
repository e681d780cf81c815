//! `relman.toml`: every key of the contract with its default, read strictly.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole configuration of a deploy root.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Config {
    pub source: SourceConfig,
    pub build: BuildConfig,
    pub shared: SharedConfig,
    pub manifest: ManifestConfig,
    pub pm2: Pm2Config,
    pub preflight: PreflightConfig,
    pub verify: VerifyConfig,
    pub hooks: HooksConfig,
    pub retention: RetentionConfig,
}

/// `[source]`: where builds come from when no flag says.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SourceConfig {
    pub path: String,
    pub git: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub exclude: Vec<String>,
    /// Where the app is inside the source when the source is a workspace (`apps/web`); empty:
    /// the source is the app.
    pub app_dir: String,
}

/// `[build]`: the commands that turn a copied source into a release.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BuildConfig {
    pub install: String,
    pub command: String,
    pub expect: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: u64,
    pub reuse_node_modules: Reuse,
    /// How many earlier sealed releases' `.next/static` files a build adds where it lacks them.
    pub static_from: usize,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            install: "npm ci".into(),
            command: "npm run build".into(),
            expect: vec![".next/BUILD_ID".into()],
            env: BTreeMap::new(),
            timeout_secs: 1800,
            reuse_node_modules: Reuse::Auto,
            static_from: 4,
        }
    }
}

/// `build.reuse_node_modules`: whether, and how, a build takes `node_modules` from the newest
/// sealed release built from the same lockfile with the same Node.js instead of installing.
///
/// Written `true` (`"auto"`), `false`, `"copy"` or `"link"`: the two booleans are what the key
/// always took, the words say how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// `false`: always run the install command.
    Off,
    /// `true` or `"auto"`: each file a copy-on-write clone where the file system has them
    /// (Btrfs, XFS); otherwise a hard link to a read-only file when relman does not run as
    /// root (root writes through file modes, so a write could cross releases); otherwise a copy.
    Auto,
    /// `"copy"`: each file copied, as before links were an option.
    Copy,
    /// `"link"`: clones, else hard links to read-only files even as root, for an operator who
    /// knows neither the build nor the app writes into `node_modules` as root.
    Link,
}

impl Reuse {
    /// Whether files may be hard-linked between releases, for relman running as root or not.
    pub fn links(self, as_root: bool) -> bool {
        match self {
            Reuse::Off | Reuse::Copy => false,
            Reuse::Auto => !as_root,
            Reuse::Link => true,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Reuse::Off => "false",
            Reuse::Auto => "auto",
            Reuse::Copy => "copy",
            Reuse::Link => "link",
        }
    }
}

impl<'de> Deserialize<'de> for Reuse {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Word(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Flag(true) => Ok(Reuse::Auto),
            Written::Flag(false) => Ok(Reuse::Off),
            Written::Word(word) => match word.as_str() {
                "auto" => Ok(Reuse::Auto),
                "copy" => Ok(Reuse::Copy),
                "link" => Ok(Reuse::Link),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not one of true, false, \"auto\", \"copy\", \"link\""
                ))),
            },
        }
    }
}

impl Serialize for Reuse {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Reuse::Off => serializer.serialize_bool(false),
            other => serializer.serialize_str(other.word()),
        }
    }
}

/// `[shared]`: persistent paths linked into every release.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SharedConfig {
    pub paths: Vec<String>,
}

/// `[manifest]`: what the checksum manifest leaves out, and which of its files the app itself
/// rewrites while it serves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManifestConfig {
    /// Paths never hashed.
    pub exclude: Vec<String>,
    /// Paths or globs of files the app may write, change or delete at run time: hashed when
    /// the build leaves them, but a difference in them never fails `verify` (see
    /// [`crate::manifest::RuntimeFiles`]).
    pub runtime: Vec<String>,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        ManifestConfig {
            exclude: vec!["node_modules".into(), ".next/cache".into()],
            runtime: DEFAULT_RUNTIME.iter().map(|&p| p.to_owned()).collect(),
        }
    }
}

/// What a Next.js server writes into its own `.next` while it serves: the route cache filled
/// on the first request to a static page, and the HTML, RSC, metadata and bodies that ISR
/// regenerates (its image and fetch caches live in `.next/cache`, excluded altogether).
pub const DEFAULT_RUNTIME: [&str; 7] = [
    ".next/server/route-cache",
    ".next/server/app/**/*.html",
    ".next/server/app/**/*.rsc",
    ".next/server/app/**/*.meta",
    ".next/server/app/**/*.body",
    ".next/server/pages/**/*.html",
    ".next/server/pages/**/*.json",
];

/// `[pm2]`: the app to reload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Pm2Config {
    pub app: String,
    pub ecosystem: String,
    pub bin: String,
    pub timeout_secs: u64,
}

impl Default for Pm2Config {
    fn default() -> Self {
        Pm2Config {
            app: String::new(),
            ecosystem: String::new(),
            bin: "pm2".into(),
            timeout_secs: 120,
        }
    }
}

/// `[preflight]`: start the release on a spare port before it goes live.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PreflightConfig {
    pub command: String,
    pub url: String,
    pub port_env: String,
    pub timeout_secs: u64,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        PreflightConfig {
            command: String::new(),
            url: String::new(),
            port_env: "PORT".into(),
            timeout_secs: 60,
        }
    }
}

/// `[verify]`: the HTTP health probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VerifyConfig {
    pub url: String,
    pub status: u16,
    pub body_contains: String,
    pub attempts: u32,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Paths of pages users visit, checked before the flip and after the roll. `None` (the
    /// key absent): a Next.js build's own static pages; `Some([])`: none.
    pub routes: Option<Vec<String>>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            url: String::new(),
            status: 200,
            body_contains: String::new(),
            attempts: 10,
            interval_ms: 1000,
            timeout_ms: 3000,
            routes: None,
        }
    }
}

/// `[hooks]`: commands run around going live, each through `sh -c` in the release's directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HooksConfig {
    /// After the preflight, before `current` moves (migrations); a failure rejects the release.
    pub before_flip: String,
    /// Once the release is live and proven; a failure only warns.
    pub after_live: String,
    /// After a rollback (by hand or automatic) proved the release it went back to.
    pub after_rollback: String,
    /// How long each hook may run before its process group is killed.
    pub timeout_secs: u64,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            before_flip: String::new(),
            after_live: String::new(),
            after_rollback: String::new(),
            timeout_secs: 600,
        }
    }
}

impl HooksConfig {
    /// Whether any hook is set.
    pub fn any(&self) -> bool {
        !(self.before_flip.is_empty()
            && self.after_live.is_empty()
            && self.after_rollback.is_empty())
    }
}

/// `[retention]`: how many sealed releases `prune` keeps.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RetentionConfig {
    pub keep: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { keep: 5 }
    }
}

/// The most relman reads of `relman.toml`.
pub const CONFIG_LIMIT: u64 = 1024 * 1024;

/// The file name of the config inside a deploy root.
pub const CONFIG_FILE: &str = "relman.toml";

impl Config {
    /// Reads `ROOT/relman.toml`; a missing file means every default.
    ///
    /// Only a regular file (or a symlink to one) of at most [`CONFIG_LIMIT`] bytes is read: a
    /// FIFO would hang every command, a link to `/dev/zero` exhaust its memory.
    pub fn load(root: &Utf8Path) -> Result<Config> {
        use crate::fs::own_files::{Links, Unreadable, read_regular_file};
        let path = root.join(CONFIG_FILE);
        let bytes = match read_regular_file(&path, CONFIG_LIMIT, Links::Follow) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Config::default()),
            Err(Unreadable::Io(err)) => return Err(Error::io("failed to read", path, err)),
            Err(why) => {
                return Err(Error::Config {
                    message: format!(
                        "{}: make `{CONFIG_FILE}` a regular file of at most 1 MiB",
                        why.describe()
                    ),
                    path,
                });
            }
        };
        let text = String::from_utf8(bytes).map_err(|err| {
            let at = err.utf8_error().valid_up_to();
            let line = err.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            Error::Config {
                message: format!(
                    "it is not UTF-8 (line {line}): `{CONFIG_FILE}` must be UTF-8, save it as such"
                ),
                path: path.clone(),
            }
        })?;
        Config::parse(&text, &path)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Utf8Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|err| Error::Config {
            path: path.to_owned(),
            message: describe_toml_error(text, &err),
        })?;
        config.validate().map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (key, paths) in [
            ("source.exclude", &self.source.exclude),
            ("build.expect", &self.build.expect),
            ("shared.paths", &self.shared.paths),
            ("manifest.exclude", &self.manifest.exclude),
        ] {
            for path in paths {
                check_relative(path).map_err(|why| format!("`{key}` entry \"{path}\" {why}"))?;
            }
        }
        if !self.source.app_dir.is_empty() {
            let path = &self.source.app_dir;
            check_relative(path).map_err(|why| format!("`source.app_dir` \"{path}\" {why}"))?;
        }
        // Every release's `.relman` is its own (claim, build lock, log, manifest, seal): a
        // link into `shared/` would make them one for all releases.
        if let Some(path) = self
            .shared
            .paths
            .iter()
            .find(|path| Utf8Path::new(path).starts_with(crate::record::META_DIR))
        {
            return Err(format!(
                "`shared.paths` entry \"{path}\" is inside `.relman`, relman's own directory in every release, which cannot be shared: remove it"
            ));
        }
        crate::manifest::RuntimeFiles::new(&self.manifest.runtime)
            .map_err(|why| format!("`manifest.runtime` {why}"))?;
        if self.build.static_from > MAX_STATIC_FROM {
            return Err(format!(
                "`build.static_from` is {}; at most {MAX_STATIC_FROM} earlier releases' static files are added to a build",
                self.build.static_from
            ));
        }
        for (key, value) in [
            ("build.timeout_secs", self.build.timeout_secs),
            ("pm2.timeout_secs", self.pm2.timeout_secs),
            ("preflight.timeout_secs", self.preflight.timeout_secs),
            ("hooks.timeout_secs", self.hooks.timeout_secs),
            ("verify.timeout_ms", self.verify.timeout_ms),
            ("verify.attempts", u64::from(self.verify.attempts)),
        ] {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        // Bounded so that every deadline relman computes (`Instant::now()` plus a timeout, or
        // plus `interval_ms` × `attempts`) stays far from overflowing, whatever the value.
        for (key, value, bound, unit) in [
            (
                "build.timeout_secs",
                self.build.timeout_secs,
                MAX_TIMEOUT_SECS,
                " (7 days)",
            ),
            (
                "pm2.timeout_secs",
                self.pm2.timeout_secs,
                MAX_TIMEOUT_SECS,
                " (7 days)",
            ),
            (
                "preflight.timeout_secs",
                self.preflight.timeout_secs,
                MAX_TIMEOUT_SECS,
                " (7 days)",
            ),
            (
                "hooks.timeout_secs",
                self.hooks.timeout_secs,
                MAX_TIMEOUT_SECS,
                " (7 days)",
            ),
            (
                "verify.timeout_ms",
                self.verify.timeout_ms,
                MAX_VERIFY_MS,
                " (1 hour)",
            ),
            (
                "verify.interval_ms",
                self.verify.interval_ms,
                MAX_VERIFY_MS,
                " (1 hour)",
            ),
            (
                "verify.attempts",
                u64::from(self.verify.attempts),
                MAX_VERIFY_ATTEMPTS,
                "",
            ),
        ] {
            if value > bound {
                return Err(format!(
                    "`{key}` must be at most {bound}{unit}, not {value}"
                ));
            }
        }
        if self.retention.keep == 0 {
            return Err("`retention.keep` must be at least 1".into());
        }
        if !(100..=599).contains(&self.verify.status) {
            return Err(format!(
                "`verify.status` must be an HTTP status (100-599), not {}",
                self.verify.status
            ));
        }
        // The URLs are checked the way the probe will use them, so a bad one is a config error
        // for every command, not a failed activation later.
        if !self.verify.url.is_empty() {
            relman_verify::validate_url(&self.verify.url)
                .map_err(|e| format!("`verify.url`: {e}"))?;
        }
        let preflight_url = &self.preflight.url;
        if !preflight_url.is_empty() {
            if !preflight_url.contains("{port}") {
                return Err("`preflight.url` must contain `{port}`, the spare port the preflight runs on (without it the preflight would probe the live app)".into());
            }
            relman_verify::validate_url(&preflight_url.replace("{port}", "1"))
                .map_err(|e| format!("`preflight.url`: {e}"))?;
        }
        if self.preflight.command.is_empty() != self.preflight.url.is_empty() {
            return Err(
                "`preflight.command` and `preflight.url` go together: set both or neither".into(),
            );
        }
        if let Some(routes) = &self.verify.routes {
            if routes.len() > MAX_ROUTES {
                return Err(format!(
                    "`verify.routes` lists {} paths; at most {MAX_ROUTES} are checked on every deploy",
                    routes.len()
                ));
            }
            for route in routes {
                check_route(route)
                    .map_err(|why| format!("`verify.routes` entry \"{route}\" {why}"))?;
            }
        }
        for (key, command) in [
            ("hooks.before_flip", &self.hooks.before_flip),
            ("hooks.after_live", &self.hooks.after_live),
            ("hooks.after_rollback", &self.hooks.after_rollback),
        ] {
            if command.contains('\0') {
                return Err(format!(
                    "`{key}` contains a NUL character, which no shell command can hold: remove it"
                ));
            }
        }
        if self.pm2.bin.is_empty() {
            return Err("`pm2.bin` must not be empty (default \"pm2\")".into());
        }
        for key in self.build.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(format!(
                    "`build.env` has an invalid variable name \"{key}\""
                ));
            }
        }
        Ok(())
    }

    /// The retention count to use when `--keep` is not given.
    pub fn keep(&self) -> usize {
        self.retention.keep
    }

    /// The app's directory in `release`: `source.app_dir` below it, or the release itself.
    pub fn app_in(&self, release: &Utf8Path) -> Utf8PathBuf {
        if self.source.app_dir.is_empty() {
            // `join("")` would add a trailing `/` to every path shown.
            return release.to_owned();
        }
        release.join(&self.source.app_dir)
    }

    /// `manifest.exclude` as a build applies it: each entry at the release's root and, for an
    /// app in a workspace, in the app's directory too (its own `node_modules` and `.next/cache`).
    pub fn manifest_exclude(&self) -> Vec<String> {
        self.in_app_too(&self.manifest.exclude)
    }

    /// `manifest.runtime` as a build applies it, like [`Config::manifest_exclude`].
    pub fn manifest_runtime(&self) -> Vec<String> {
        self.in_app_too(&self.manifest.runtime)
    }

    fn in_app_too(&self, entries: &[String]) -> Vec<String> {
        let mut all = entries.to_vec();
        if !self.source.app_dir.is_empty() {
            all.extend(entries.iter().map(|entry| self.in_app(entry)));
        }
        all
    }

    /// `path` of the app, relative to the release: below `source.app_dir`, or `path` itself.
    pub fn in_app(&self, path: &str) -> String {
        match self.source.app_dir.trim_end_matches('/') {
            "" => path.to_owned(),
            app => format!("{app}/{path}"),
        }
    }

    /// Shared paths as validated relative paths.
    pub fn shared_paths(&self) -> Vec<Utf8PathBuf> {
        self.shared.paths.iter().map(Utf8PathBuf::from).collect()
    }
}

/// A relative path that stays inside the directory it is relative to.
pub(crate) fn check_relative(path: &str) -> Result<(), &'static str> {
    let p = Utf8Path::new(path);
    if path.is_empty() {
        return Err("is empty");
    }
    if p.is_absolute() {
        return Err("must be relative, not absolute");
    }
    if p.components()
        .any(|c| !matches!(c, camino::Utf8Component::Normal(_)))
    {
        return Err("must not contain `..` or `.` components");
    }
    Ok(())
}

/// The longest `build.timeout_secs`, `pm2.timeout_secs` and `preflight.timeout_secs`: 7 days.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 60 * 60;

/// The most earlier releases whose `.next/static` files a build adds.
pub const MAX_STATIC_FROM: usize = 50;

/// The longest `verify.timeout_ms` and `verify.interval_ms`: 1 hour.
pub const MAX_VERIFY_MS: u64 = 60 * 60 * 1000;

/// The most `verify.attempts`.
pub const MAX_VERIFY_ATTEMPTS: u64 = 1000;

/// The most routes `verify.routes` may list (and the most a Next.js build's manifests give).
pub const MAX_ROUTES: usize = 20;

/// A path to request on the app: `/`, then URL path characters, an optional query.
fn check_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') || route.starts_with("//") {
        return Err("must be a path starting with one `/`, like \"/pricing\"".into());
    }
    if route.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters: percent-encode them".into());
    }
    if route.contains('#') {
        return Err("has a `#fragment`, which is never sent to the server".into());
    }
    relman_verify::validate_url(&format!("http://127.0.0.1{route}"))
        .map_err(|e| format!("is not a valid URL path: {e}"))
}

/// One line: the key's line in the file and toml's own message.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    let Some(span) = err.span() else {
        return message;
    };
    let line_number = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_number - 1).map_or("", |l| l.trim());
    // The dotted key: the nearest `[table]` above the line, and the key before its `=`.
    let table = lines[..line_number.saturating_sub(1).min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (table, line.split_once('=')) {
        (Some(table), Some((key, _))) => {
            format!("`{table}.{}` (line {line_number}): {message}", key.trim())
        }
        _ => format!("line {line_number} (`{line}`): {message}"),
    }
}

/// The commented `relman.toml` that `relman init` writes.
pub const TEMPLATE: &str = r#"# relman.toml: every key is optional; the values shown are the defaults.
# Reference: docs/reference.md. An unknown key or a wrong type is an error (exit 2).

[source]
# path = "/srv/web/repo"       # default for `relman build --source`
# git = ""                     # default for `relman build --git`
# ref = ""                     # default for `--ref` (empty: the remote's default branch)
# exclude = []                 # more paths to leave out of the copy
# app_dir = ""                 # the app's directory in a workspace source, e.g. "apps/web"

[build]
# install = "npm ci"           # empty: skip
# command = "npm run build"    # empty: skip
# expect = [".next/BUILD_ID"]  # paths that must exist after the build
# env = {}                     # extra environment for both commands
# timeout_secs = 1800
# reuse_node_modules = true    # take node_modules from the newest sealed release with the same lockfile and node: true (auto), false, "copy", "link"
# static_from = 4              # Next.js: add the .next/static files of this many earlier releases, so open tabs keep working

[shared]
# paths = []                   # e.g. [".env.production", "public/uploads"], linked to ROOT/shared/

[manifest]
# exclude = ["node_modules", ".next/cache"]
# runtime = [                  # files the app writes at run time: a difference there never fails `verify`
#   ".next/server/route-cache",   # a path: it and everything below it
#   ".next/server/app/**/*.html", # a glob: `*` stays within one directory, `**` crosses them
#   ".next/server/app/**/*.rsc",
#   ".next/server/app/**/*.meta",
#   ".next/server/app/**/*.body",
#   ".next/server/pages/**/*.html",
#   ".next/server/pages/**/*.json",
# ]

[pm2]
# app = ""                     # the PM2 app name; empty: no reload
# ecosystem = ""               # reload through this ecosystem file instead
# bin = "pm2"
# timeout_secs = 120           # per worker

[preflight]
# command = ""                 # e.g. "node_modules/.bin/next start -p {port}"; empty: no preflight
# url = ""                     # e.g. "http://127.0.0.1:{port}/api/health"
# port_env = "PORT"
# timeout_secs = 60

[verify]
# url = ""                     # e.g. "http://127.0.0.1:3000/api/health"; empty: no probe
# status = 200
# body_contains = ""           # "{release}" stands for the release ID
# attempts = 10
# interval_ms = 1000
# timeout_ms = 3000
# routes = []                  # pages checked before the flip and after the roll, e.g. ["/", "/pricing"];
#                              # absent: a Next.js build's static pages (at most 20)

[hooks]                        # each run with `sh -c` in the release's directory; empty: none
# before_flip = ""             # after the preflight, before `current` moves, e.g. "npx prisma migrate deploy";
#                              # failing rejects the release (exit 3) and the old one stays live
# after_live = ""              # once live and proven, e.g. a chat message; failing only warns
# after_rollback = ""          # after a rollback (by hand or automatic) proved the release it went back to
# timeout_secs = 600           # per hook; past it, the hook's whole process group is killed

[retention]
# keep = 5
"#;

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Utf8Path::new("relman.toml"))
    }

    #[test]
    fn empty_and_template_give_defaults() {
        for text in ["", TEMPLATE] {
            let config = parse(text).unwrap();
            assert_eq!(config.build.install, "npm ci");
            assert_eq!(config.build.expect, [".next/BUILD_ID"]);
            assert_eq!(config.manifest.exclude, ["node_modules", ".next/cache"]);
            assert_eq!(config.manifest.runtime, DEFAULT_RUNTIME);
            assert_eq!(config.pm2.timeout_secs, 120);
            assert_eq!(config.retention.keep, 5);
            assert_eq!(config.verify.attempts, 10);
            assert_eq!(config.verify.routes, None);
        }
        let config = parse("[verify]\nroutes = []").unwrap();
        assert_eq!(config.verify.routes, Some(vec![]));
        let config = parse("[verify]\nroutes = [\"/\", \"/pricing?plan=pro\"]").unwrap();
        assert_eq!(config.verify.routes.unwrap().len(), 2);
    }

    #[test]
    fn reuse_node_modules_takes_a_boolean_or_a_word_and_links_only_where_modes_hold() {
        let reuse = |value: &str| {
            parse(&format!("[build]\nreuse_node_modules = {value}\n"))
                .map(|config| config.build.reuse_node_modules)
        };
        assert_eq!(parse("").unwrap().build.reuse_node_modules, Reuse::Auto);
        assert_eq!(reuse("true").unwrap(), Reuse::Auto);
        assert_eq!(reuse("\"auto\"").unwrap(), Reuse::Auto);
        assert_eq!(reuse("false").unwrap(), Reuse::Off);
        assert_eq!(reuse("\"copy\"").unwrap(), Reuse::Copy);
        assert_eq!(reuse("\"link\"").unwrap(), Reuse::Link);
        let err = reuse("\"hardlink\"").unwrap_err().to_string();
        assert!(err.contains("`build.reuse_node_modules` (line 2)"), "{err}");
        assert!(err.contains("\"link\""), "the words are named: {err}");
        assert!(reuse("1").is_err());

        // Root writes through any file mode: links only when asked for by name.
        assert!(Reuse::Auto.links(false));
        assert!(!Reuse::Auto.links(true));
        assert!(Reuse::Link.links(true));
        assert!(!Reuse::Copy.links(false));
        assert!(!Reuse::Off.links(false));
        // It round-trips through the serialised config.
        for value in [Reuse::Off, Reuse::Auto, Reuse::Copy, Reuse::Link] {
            let mut config = Config::default();
            config.build.reuse_node_modules = value;
            let text = toml::to_string(&config).unwrap();
            assert_eq!(parse(&text).unwrap().build.reuse_node_modules, value);
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[build]\ninstal = \"npm ci\"\n").unwrap_err();
        assert!(err.is_usage());
        let text = err.to_string();
        assert!(text.contains("instal"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[build]\ntimeout_secs = \"ten\"\n").unwrap_err();
        assert!(
            err.to_string().contains("`build.timeout_secs` (line 2)"),
            "{err}"
        );
        let err = parse("[retention]\nkeep = -1\n").unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }

    #[test]
    fn durations_and_counts_are_bounded_at_load() {
        for (table, key, bound) in [
            ("build", "timeout_secs", MAX_TIMEOUT_SECS),
            ("pm2", "timeout_secs", MAX_TIMEOUT_SECS),
            ("preflight", "timeout_secs", MAX_TIMEOUT_SECS),
            ("verify", "timeout_ms", MAX_VERIFY_MS),
            ("verify", "interval_ms", MAX_VERIFY_MS),
            ("verify", "attempts", MAX_VERIFY_ATTEMPTS),
        ] {
            parse(&format!("[{table}]\n{key} = {bound}")).unwrap();
            let err = parse(&format!("[{table}]\n{key} = {}", bound + 1)).unwrap_err();
            assert!(err.is_usage());
            let text = err.to_string();
            assert!(
                text.contains(&format!("`{table}.{key}` must be at most {bound}")),
                "{text}"
            );
        }
        let err = parse("[build]\ntimeout_secs = 9223372036854775807").unwrap_err();
        assert!(err.to_string().contains("`build.timeout_secs`"), "{err}");
    }

    /// Every deadline relman computes from the config, at the bounds, as relman computes it:
    /// the build's (`build.rs`), a worker's proof and the preflight (`relman-activate`'s
    /// `roll.rs`: `interval_ms` × `attempts`, and each timeout), the probe's tries.
    #[test]
    fn deadlines_at_the_bounds_cannot_overflow_an_instant() {
        let config = parse(&format!(
            "[build]\ntimeout_secs = {MAX_TIMEOUT_SECS}\n[pm2]\ntimeout_secs = {MAX_TIMEOUT_SECS}\n\
             [preflight]\ntimeout_secs = {MAX_TIMEOUT_SECS}\n\
             [verify]\ntimeout_ms = {MAX_VERIFY_MS}\ninterval_ms = {MAX_VERIFY_MS}\nattempts = {MAX_VERIFY_ATTEMPTS}"
        ))
        .unwrap();
        let verify = &config.verify;
        let patience = Duration::from_millis(
            verify
                .interval_ms
                .saturating_mul(u64::from(verify.attempts)),
        );
        assert_eq!(patience, Duration::from_secs(3_600_000), "41 days 16 hours");
        let now = Instant::now();
        for duration in [
            Duration::from_secs(config.build.timeout_secs),
            Duration::from_secs(config.pm2.timeout_secs),
            Duration::from_secs(config.preflight.timeout_secs),
            Duration::from_millis(verify.timeout_ms),
            Duration::from_millis(verify.interval_ms),
            patience,
            // Sums of them: the preflight's whole wait then the probe's patience, and every
            // try at its longest.
            Duration::from_secs(config.preflight.timeout_secs) + patience,
            Duration::from_millis(verify.timeout_ms.saturating_mul(u64::from(verify.attempts))),
        ] {
            assert!(now.checked_add(duration).is_some(), "{duration:?}");
            // And with room to spare: a hundred times over still fits.
            assert!(now.checked_add(duration * 100).is_some(), "{duration:?}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[shared]\npaths = [\"/etc/passwd\"]", "shared.paths"),
            ("[shared]\npaths = [\"../up\"]", "shared.paths"),
            ("[shared]\npaths = [\".relman\"]", "relman's own directory"),
            (
                "[shared]\npaths = [\".relman/lock\"]",
                "relman's own directory",
            ),
            ("[retention]\nkeep = 0", "retention.keep"),
            ("[verify]\nurl = \"https://x\"", "verify.url"),
            (
                "[verify]\nurl = \"http://127.0.0.1:3000/{release}\"",
                "verify.url",
            ),
            (
                "[preflight]\ncommand = \"node s.js\"\nurl = \"http://127.0.0.1:3000/\"",
                "preflight.url",
            ),
            ("[verify]\nstatus = 42", "verify.status"),
            ("[preflight]\ncommand = \"node server.js\"", "preflight"),
            ("[build]\ntimeout_secs = 0", "build.timeout_secs"),
            ("[verify]\nroutes = [\"pricing\"]", "verify.routes"),
            ("[verify]\nroutes = [\"/a b\"]", "verify.routes"),
            ("[verify]\nroutes = [\"/a#top\"]", "verify.routes"),
            ("[verify]\nroutes = [\"//evil.example/\"]", "verify.routes"),
            ("[manifest]\nruntime = [\".next/[abc\"]", "manifest.runtime"),
            ("[manifest]\nruntime = [\"/srv/x/**\"]", "manifest.runtime"),
            (
                "[manifest]\nruntime = [\".next/../**/*.html\"]",
                "manifest.runtime",
            ),
            ("[manifest]\nruntime = [\"\"]", "manifest.runtime"),
            ("[source]\napp_dir = \"../web\"", "source.app_dir"),
            ("[source]\napp_dir = \"/srv/src/web\"", "source.app_dir"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }
}
