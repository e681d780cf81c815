//! `relman init --app NAME --port PORT [--source DIR]`: a `relman.toml` with the keys an app
//! needs set (Next.js ones when the source depends on `next`), and an `ecosystem.config.js`
//! that PM2 starts the app from, `cwd` = `ROOT/current`. For a Next.js app, also
//! `next-server.js` beside them: the server PM2 and the preflight run, which loads `next` from
//! the release and drains on a reload (see that file), so the app stays stock.
//!
//! Everything is decided from the source's `package.json` and lockfile, read here once into
//! [`Detected`]; the two files are rendered from it, so what `init` writes is unit-tested
//! without a filesystem.

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, Result};

/// The server `init` writes for a Next.js app, in the deploy root.
pub const NEXT_SERVER_FILE: &str = "next-server.js";

/// Its text.
pub(crate) const NEXT_SERVER: &str = include_str!("next-server.js");

/// What `init --app` is asked for.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The PM2 app name.
    pub name: AppName,
    /// The port users reach the app on.
    pub port: u16,
    /// The app's source, when given: its `package.json` decides the defaults.
    pub source: Option<Utf8PathBuf>,
    /// The app's directory in its source when the source is a workspace (`apps/web`).
    pub app_dir: Option<Utf8PathBuf>,
}

/// A PM2 app name relman can pass on a command line and in a file: the release ID's alphabet,
/// and not only digits (PM2 takes a number for an instance id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(String);

impl AppName {
    /// Validates a name.
    pub fn parse(name: &str) -> Result<AppName> {
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let starts = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok_chars || !starts || name.len() > 64 {
            return Err(Error::Usage(format!(
                "invalid app name {name:?}: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
            )));
        }
        if name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Usage(format!(
                "invalid app name {name:?}: PM2 reads a number as an instance id; use a name with a letter in it"
            )));
        }
        Ok(AppName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which kind of app the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppKind {
    /// `package.json` depends on `next`: `next build`, `next start`.
    Next,
    /// Any other Node.js server: PM2 runs `script`.
    Node {
        /// `package.json`'s `main`, else `server.js`.
        script: String,
        /// Whether `package.json` has a `build` script.
        build_script: bool,
    },
}

/// The package manager, from the lockfile the source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    /// `package-lock.json` or `npm-shrinkwrap.json`.
    Npm,
    /// `pnpm-lock.yaml`.
    Pnpm,
    /// `yarn.lock`.
    Yarn,
    /// No lockfile: `npm install`, which resolves versions at build time.
    Unlocked,
}

impl PackageManager {
    fn install(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm ci",
            PackageManager::Pnpm => "pnpm install --frozen-lockfile",
            PackageManager::Yarn => "yarn install --frozen-lockfile",
            PackageManager::Unlocked => "npm install",
        }
    }

    fn run_build(self) -> &'static str {
        match self {
            PackageManager::Npm | PackageManager::Unlocked => "npm run build",
            PackageManager::Pnpm => "pnpm run build",
            PackageManager::Yarn => "yarn run build",
        }
    }
}

/// What the source says about the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The kind of app.
    pub kind: AppKind,
    /// Its package manager.
    pub manager: PackageManager,
}

impl Detected {
    /// Without a source: a Next.js app installed with npm, relman's first audience.
    pub fn assumed() -> Detected {
        Detected {
            kind: AppKind::Next,
            manager: PackageManager::Npm,
        }
    }

    /// Reads the app's `package.json` (in `app_dir` of the source, for a workspace) and looks
    /// for a lockfile at the source's root.
    pub fn of_source(source: &Utf8Path, app_dir: Option<&Utf8Path>) -> Result<Detected> {
        if !source.is_dir() {
            return Err(Error::Usage(format!(
                "`--source {source}` is not a directory: give the app's source (the directory with its package.json)"
            )));
        }
        let dir = match app_dir {
            Some(app_dir) => {
                let dir = source.join(app_dir);
                if crate::config::check_relative(app_dir.as_str()).is_err()
                    || !crate::fs::real_dir(source, app_dir.as_str())
                {
                    return Err(Error::Usage(format!(
                        "`--app-dir {app_dir}` is not a directory of `{source}` (a symlink is not followed): give the app's path in the workspace, e.g. `apps/web`"
                    )));
                }
                dir
            }
            None => source.to_owned(),
        };
        let manifest = dir.join("package.json");
        let text = match std::fs::read_to_string(&manifest) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!(
                    "`{manifest}` does not exist: `--source` must be the app's directory, the one with its package.json (in a workspace, `--app-dir` names it)"
                )));
            }
            Err(err) => return Err(Error::io("failed to read", manifest, err)),
        };
        let package: serde_json::Value =
            serde_json::from_str(&text).map_err(|err| Error::Malformed {
                path: manifest.clone(),
                message: format!("not valid JSON ({err}); fix it or leave out `--source`"),
            })?;
        let depends_on = |name: &str| {
            ["dependencies", "devDependencies"]
                .iter()
                .any(|key| package[key].get(name).is_some())
        };
        let kind = if depends_on("next") {
            AppKind::Next
        } else {
            AppKind::Node {
                script: package["main"]
                    .as_str()
                    .filter(|main| !main.is_empty())
                    .unwrap_or("server.js")
                    .to_owned(),
                build_script: package["scripts"].get("build").is_some(),
            }
        };
        // A workspace has one lockfile, at its root.
        let has = |file: &str| source.join(file).is_file();
        let manager = if has("pnpm-lock.yaml") {
            PackageManager::Pnpm
        } else if has("yarn.lock") {
            PackageManager::Yarn
        } else if has("package-lock.json") || has("npm-shrinkwrap.json") {
            PackageManager::Npm
        } else {
            PackageManager::Unlocked
        };
        Ok(Detected { kind, manager })
    }

    /// A line for the operator: what was decided and from what.
    pub fn describe(&self) -> String {
        let kind = match &self.kind {
            AppKind::Next => {
                "a Next.js app (`next build`, served by a draining `next-server.js`)".to_owned()
            }
            AppKind::Node { script, .. } => format!("a Node.js server (PM2 runs `{script}`)"),
        };
        format!("{kind}, installed with `{}`", self.manager.install())
    }
}

/// The Server Actions key a Next.js app gets from `init`: 32 random bytes, base64. Without a
/// fixed key every `next build` makes its own, and a Server Action posted from a page of the
/// previous release (an open tab, or the other worker during a roll) cannot be decrypted.
pub(crate) fn actions_key() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|err| Error::io("failed to read", Utf8PathBuf::from("/dev/urandom"), err))?;
    Ok(base64(&bytes))
}

/// Standard base64 with padding (RFC 4648), what Next.js expects for the key.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The environment variable of that key.
pub const ACTIONS_KEY_ENV: &str = "NEXT_SERVER_ACTIONS_ENCRYPTION_KEY";

/// The keys `init --app` sets in the template, section by section. `actions_key`: for a
/// Next.js app, set in `build.env` (the key goes into the build).
pub(crate) fn config_keys(
    spec: &AppSpec,
    detected: &Detected,
    next_server: &Utf8Path,
    actions_key: Option<&str>,
) -> Vec<(&'static str, &'static str, toml::Value)> {
    let text = |s: &str| toml::Value::String(s.to_owned());
    let mut keys = Vec::new();
    if let Some(source) = &spec.source {
        keys.push(("source", "path", text(source.as_str())));
    }
    if let Some(app_dir) = &spec.app_dir {
        keys.push(("source", "app_dir", text(app_dir.as_str())));
    }
    keys.push(("build", "install", text(detected.manager.install())));
    let (command, expect, preflight) = match &detected.kind {
        AppKind::Next => (
            detected.manager.run_build(),
            vec![text(".next/BUILD_ID")],
            format!("node {}", shell_word(next_server.as_str())),
        ),
        AppKind::Node {
            script,
            build_script,
        } => (
            if *build_script {
                detected.manager.run_build()
            } else {
                ""
            },
            Vec::new(),
            format!("node {script}"),
        ),
    };
    // Installed at the workspace's root, built in the app's directory.
    let command = match &spec.app_dir {
        Some(app_dir) if !command.is_empty() => {
            format!("cd {} && {command}", shell_word(app_dir.as_str()))
        }
        _ => command.to_owned(),
    };
    keys.push(("build", "command", text(&command)));
    keys.push(("build", "expect", toml::Value::Array(expect)));
    if let Some(key) = actions_key {
        let mut env = toml::map::Map::new();
        env.insert(ACTIONS_KEY_ENV.to_owned(), text(key));
        keys.push(("build", "env", toml::Value::Table(env)));
    }
    keys.push(("pm2", "app", text(spec.name.as_str())));
    keys.push(("preflight", "command", text(&preflight)));
    keys.push(("preflight", "url", text("http://127.0.0.1:{port}/")));
    keys.push((
        "verify",
        "url",
        text(&format!("http://127.0.0.1:{}/", spec.port)),
    ));
    keys
}

/// `word` for `sh -c`: as it is when it holds nothing the shell reads, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,@%=".contains(&b));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The commented template with `keys` set: each `# key = default` line of its section becomes
/// `key = value`, its comment kept.
pub(crate) fn render_config(
    template: &str,
    keys: &[(&'static str, &'static str, toml::Value)],
) -> String {
    let mut section = "";
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        }
        let set = keys.iter().find(|(s, key, _)| {
            *s == section
                && line
                    .strip_prefix("# ")
                    .and_then(|rest| rest.strip_prefix(*key))
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        match set {
            Some((_, key, value)) => {
                let comment = line.find("  #").map(|at| line[at..].trim_start());
                let assignment = format!("{key} = {value}");
                match comment {
                    Some(comment) => {
                        out.push_str(&format!("{assignment:<30} {comment}"));
                    }
                    None => out.push_str(&assignment),
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `ecosystem.config.js` for PM2: cluster mode, two workers, `cwd` = `ROOT/current` itself (a
/// reload then starts each new worker in whatever `current` names), and the timeouts a
/// zero-downtime reload needs.
pub(crate) fn render_ecosystem(
    spec: &AppSpec,
    detected: &Detected,
    current: &Utf8Path,
    next_server: &Utf8Path,
    actions_key: Option<&str>,
) -> String {
    let js = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let port = spec.port;
    let script = match &detected.kind {
        AppKind::Next => next_server.to_string(),
        AppKind::Node { script, .. } => script.clone(),
    };
    let key = actions_key.map_or_else(String::new, |key| {
        format!(
            "\n        // The same key as `build.env` in relman.toml: Server Actions from pages of an\n        // earlier release keep working.\n        {ACTIONS_KEY_ENV}: {},",
            js(key)
        )
    });
    format!(
        r#"// PM2's ecosystem file for "{name}", written by `relman init`. relman starts the app from it
// at the first activation; after a change here: `pm2 delete {name}`, `pm2 start` this file.
module.exports = {{
  apps: [
    {{
      name: {name_js},
      // The symlink itself, never a resolved release: each reloaded worker starts in the
      // release `current` names at that moment.
      cwd: {cwd},
      script: {script},
      // Cluster mode with two or more workers: a reload then replaces one worker at a time
      // while the others serve. In fork mode a reload is a restart and drops requests.
      exec_mode: "cluster",
      instances: 2,
      // How long a stopping worker may finish its in-flight requests before SIGKILL.
      kill_timeout: 10000,
      // How long PM2 (and relman's proof) waits for a new worker to listen: well above a
      // cold boot on a busy host (a stock Next.js app took up to 9 s beside another build).
      listen_timeout: 30000,
      env: {{
        NODE_ENV: "production",
        PORT: "{port}",{key}
      }},
    }},
  ],
}};
"#,
        name = spec.name.as_str(),
        name_js = js(spec.name.as_str()),
        cwd = js(spec
            .app_dir
            .as_ref()
            .map_or_else(|| current.to_owned(), |app_dir| current.join(app_dir))
            .as_str()),
        script = js(&script),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TEMPLATE};

    fn spec(source: Option<&str>) -> AppSpec {
        AppSpec {
            name: AppName::parse("web").unwrap(),
            port: 3000,
            source: source.map(Utf8PathBuf::from),
            app_dir: None,
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("/srv/web/next-server.js"),
            "/srv/web/next-server.js"
        );
        assert_eq!(shell_word("/srv/my web/x.js"), "'/srv/my web/x.js'");
        assert_eq!(shell_word("/a'b"), r"'/a'\''b'");
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0xfd], "//79"),
        ] {
            assert_eq!(base64(bytes), text);
        }
        let key = actions_key().unwrap();
        assert_eq!(key.len(), 44);
        assert_ne!(key, actions_key().unwrap());
    }

    #[test]
    fn app_names_are_checked() {
        for good in ["web", "my-app.v2", "a", "shop_1"] {
            assert!(AppName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "a b", "web;rm", "123", &"x".repeat(65)] {
            let err = AppName::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid app name"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn next_config_sets_build_preflight_and_probe() {
        let keys = config_keys(
            &spec(Some("/srv/src")),
            &Detected::assumed(),
            Utf8Path::new("/srv/web/next-server.js"),
            Some("a2V5"),
        );
        let text = render_config(TEMPLATE, &keys);
        let config = Config::parse(&text, Utf8Path::new("relman.toml")).unwrap();
        assert_eq!(config.source.path, "/srv/src");
        assert_eq!(config.build.install, "npm ci");
        assert_eq!(config.build.command, "npm run build");
        assert_eq!(config.build.expect, [".next/BUILD_ID"]);
        assert_eq!(config.pm2.app, "web");
        assert_eq!(config.preflight.command, "node /srv/web/next-server.js");
        assert_eq!(config.preflight.url, "http://127.0.0.1:{port}/");
        assert_eq!(config.verify.url, "http://127.0.0.1:3000/");
        assert_eq!(
            config.build.env.get(ACTIONS_KEY_ENV).map(String::as_str),
            Some("a2V5")
        );
        // Every key was found in the template: as many set lines as keys.
        let set = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(" = "))
            .count();
        assert_eq!(set, keys.len(), "{text}");
    }

    #[test]
    fn an_app_in_a_workspace_is_installed_at_the_root_built_in_its_directory_and_run_there() {
        let spec = AppSpec {
            app_dir: Some("apps/web".into()),
            ..spec(Some("/srv/src/mono"))
        };
        let detected = Detected {
            manager: PackageManager::Pnpm,
            ..Detected::assumed()
        };
        let keys = config_keys(
            &spec,
            &detected,
            Utf8Path::new("/srv/web/next-server.js"),
            None,
        );
        let text = render_config(TEMPLATE, &keys);
        let config = Config::parse(&text, Utf8Path::new("relman.toml")).unwrap();
        assert_eq!(config.source.app_dir, "apps/web");
        assert_eq!(config.build.install, "pnpm install --frozen-lockfile");
        assert_eq!(config.build.command, "cd apps/web && pnpm run build");
        assert_eq!(
            config.build.expect,
            [".next/BUILD_ID"],
            "relative to the app"
        );
        assert_eq!(
            config.manifest_exclude(),
            [
                "node_modules",
                ".next/cache",
                "apps/web/node_modules",
                "apps/web/.next/cache"
            ]
        );
        assert!(
            config
                .manifest_runtime()
                .contains(&"apps/web/.next/server/route-cache".to_owned())
        );
        let ecosystem = render_ecosystem(
            &spec,
            &detected,
            Utf8Path::new("/srv/web/current"),
            Utf8Path::new("/srv/web/next-server.js"),
            None,
        );
        assert!(
            ecosystem.contains(r#"cwd: "/srv/web/current/apps/web","#),
            "{ecosystem}"
        );
    }

    #[test]
    fn a_workspace_app_is_read_from_its_directory_and_its_lockfile_from_the_root() {
        let temp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(temp.path()).unwrap();
        std::fs::create_dir_all(dir.join("apps/web")).unwrap();
        std::fs::write(dir.join("package.json"), r#"{"private": true}"#).unwrap();
        std::fs::write(dir.join("pnpm-lock.yaml"), "lockfileVersion: '9.0'\n").unwrap();
        std::fs::write(
            dir.join("apps/web/package.json"),
            r#"{"dependencies": {"next": "16.4.3"}}"#,
        )
        .unwrap();
        let detected = Detected::of_source(dir, Some(Utf8Path::new("apps/web"))).unwrap();
        assert_eq!(detected.kind, AppKind::Next);
        assert_eq!(detected.manager, PackageManager::Pnpm);
        for bad in ["apps/api", "../x", "/abs"] {
            let err = Detected::of_source(dir, Some(Utf8Path::new(bad)))
                .unwrap_err()
                .to_string();
            assert!(err.contains("--app-dir"), "{bad}: {err}");
        }
    }

    #[test]
    fn node_config_follows_the_package_and_its_lockfile() {
        let detected = Detected {
            kind: AppKind::Node {
                script: "index.js".into(),
                build_script: false,
            },
            manager: PackageManager::Pnpm,
        };
        let text = render_config(
            TEMPLATE,
            &config_keys(
                &spec(None),
                &detected,
                Utf8Path::new("/x/next-server.js"),
                None,
            ),
        );
        let config = Config::parse(&text, Utf8Path::new("relman.toml")).unwrap();
        assert_eq!(config.build.install, "pnpm install --frozen-lockfile");
        assert_eq!(config.build.command, "");
        assert!(config.build.expect.is_empty());
        assert_eq!(config.preflight.command, "node index.js");
        assert_eq!(config.source.path, "");
    }

    #[test]
    fn ecosystem_runs_from_current_in_cluster_mode() {
        let text = render_ecosystem(
            &spec(None),
            &Detected::assumed(),
            Utf8Path::new("/srv/web/current"),
            Utf8Path::new("/srv/web/next-server.js"),
            Some("a2V5"),
        );
        assert!(
            text.contains(r#"NEXT_SERVER_ACTIONS_ENCRYPTION_KEY: "a2V5","#),
            "{text}"
        );
        assert!(text.contains(r#"cwd: "/srv/web/current","#), "{text}");
        assert!(text.contains(r#"exec_mode: "cluster","#), "{text}");
        assert!(
            text.contains(r#"script: "/srv/web/next-server.js","#),
            "{text}"
        );
        assert!(text.contains(r#"PORT: "3000","#), "{text}");
    }

    #[test]
    fn detection_reads_package_json_and_lockfiles() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"main":"app.js","scripts":{"build":"tsc"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("yarn.lock"), "").unwrap();
        let detected = Detected::of_source(dir, None).unwrap();
        assert_eq!(
            detected.kind,
            AppKind::Node {
                script: "app.js".into(),
                build_script: true
            }
        );
        assert_eq!(detected.manager, PackageManager::Yarn);

        std::fs::write(
            dir.join("package.json"),
            r#"{"devDependencies":{"next":"16.0.0"}}"#,
        )
        .unwrap();
        std::fs::remove_file(dir.join("yarn.lock")).unwrap();
        std::fs::write(dir.join("package-lock.json"), "{}").unwrap();
        let detected = Detected::of_source(dir, None).unwrap();
        assert_eq!(detected, Detected::assumed());

        std::fs::write(dir.join("package.json"), "{").unwrap();
        let err = Detected::of_source(dir, None).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
