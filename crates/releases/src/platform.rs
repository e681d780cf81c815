//! Which hosts can run a release: the Node.js version, platform and architecture a build
//! recorded in its seal, against this host's, and whether `node_modules` holds native code
//! (the only case where they must agree).
//!
//! Names are Node's (`process.platform`, `process.arch`: `linux`/`x64`), read from `node`
//! itself and, without it, mapped from Rust's own names for the platform relman runs on.

use std::fmt;

use crate::run;

/// What a host runs releases with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    /// `node --version` (`v20.11.1`), `None` when Node.js is not found.
    pub(crate) node_version: Option<String>,
    /// `process.platform`.
    pub(crate) platform: String,
    /// `process.arch`.
    pub(crate) arch: String,
}

impl Host {
    /// This host: `node -p` for the platform and architecture, Rust's names mapped to Node's
    /// when Node.js is not found. `node_version` is the build's `node --version`, already run.
    pub(crate) fn detect(node_version: Option<String>) -> Host {
        let from_node = node_version
            .as_ref()
            .and_then(|_| {
                run::capture(
                    "node",
                    &["-p", "process.platform + ' ' + process.arch"],
                    None,
                )
            })
            .and_then(|text| {
                let (platform, arch) = text.split_once(' ')?;
                (!platform.is_empty() && !arch.is_empty() && !arch.contains(' '))
                    .then(|| (platform.to_owned(), arch.to_owned()))
            });
        let (platform, arch) = from_node.unwrap_or_else(|| {
            (
                node_platform(std::env::consts::OS).to_owned(),
                node_arch(std::env::consts::ARCH).to_owned(),
            )
        });
        Host {
            node_version,
            platform,
            arch,
        }
    }

    /// This host, `node --version` included.
    pub(crate) fn detect_with_node() -> Host {
        Host::detect(run::capture("node", &["--version"], None))
    }
}

/// Node's `process.platform` for Rust's `std::env::consts::OS`.
fn node_platform(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        "windows" => "win32",
        "solaris" | "illumos" => "sunos",
        other => other,
    }
}

/// Node's `process.arch` for Rust's `std::env::consts::ARCH`.
fn node_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "x64",
        "x86" => "ia32",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The major version of `v20.11.1`, `20`.
fn major(version: &str) -> Option<u32> {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether a path of a release is native code that only runs where it was compiled: a
/// `*.node` addon, a `binding.gyp`, or anything in a `build/Release` directory, below a
/// `node_modules`.
pub(crate) fn is_native(path: &str) -> bool {
    let mut components = path.split('/');
    if !components.any(|c| c == "node_modules") {
        return false;
    }
    let rest: Vec<&str> = components.collect();
    let Some(name) = rest.last() else {
        return false;
    };
    name.ends_with(".node")
        || *name == "binding.gyp"
        || rest.windows(2).any(|pair| pair == ["build", "Release"])
}

/// What the build recorded about the host it ran on (from the seal).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Built<'a> {
    pub(crate) node_version: Option<&'a str>,
    pub(crate) platform: Option<&'a str>,
    pub(crate) arch: Option<&'a str>,
}

/// Why this host cannot run a release that holds native code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// What differs, e.g. `arch arm64 (built) vs x64 (this host)`.
    pub(crate) differences: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.differences.join(", "))
    }
}

/// Compares the build's host with this one. With native code (`native`: the first native
/// path met), a different platform, architecture or Node.js major version is a
/// [`Mismatch`]; everything else that differs or cannot be told is a warning.
pub(crate) fn check(
    built: Built<'_>,
    host: &Host,
    native: Option<&str>,
) -> Result<Vec<String>, Mismatch> {
    let mut differences = Vec::new();
    let mut warnings = Vec::new();
    let mut unknown = Vec::new();
    for (what, was, now) in [
        ("platform", built.platform, Some(host.platform.as_str())),
        ("arch", built.arch, Some(host.arch.as_str())),
    ] {
        match was {
            Some(was) if Some(was) != now => differences.push(format!(
                "{what} {was} (built) vs {} (this host)",
                now.unwrap_or("?")
            )),
            Some(_) => {}
            None => unknown.push(what),
        }
    }
    match (built.node_version, host.node_version.as_deref()) {
        (Some(was), Some(now)) if major(was) != major(now) => {
            differences.push(format!("Node.js {was} (built) vs {now} (this host)"));
        }
        (Some(was), Some(now)) if was != now => warnings.push(format!(
            "built with Node.js {was}, this host has {now}: same major version, so it should run"
        )),
        (Some(was), None) => warnings.push(format!(
            "built with Node.js {was}, and `node` is not found on this host"
        )),
        (None, _) => unknown.push("Node.js version"),
        _ => {}
    }
    match native {
        Some(_) if !differences.is_empty() => Err(Mismatch { differences }),
        Some(path) => {
            if !unknown.is_empty() {
                warnings.push(format!(
                    "node_modules holds native code (`{path}`) and the seal does not record the build's {}: it may not run here",
                    unknown.join(" or ")
                ));
            }
            Ok(warnings)
        }
        None => {
            warnings.extend(differences.into_iter().map(|d| {
                format!("built on another host ({d}); node_modules holds no native code, so it should run")
            }));
            Ok(warnings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            node_version: Some("v20.11.1".into()),
            platform: "linux".into(),
            arch: "x64".into(),
        }
    }

    fn built<'a>(node: Option<&'a str>, platform: &'a str, arch: &'a str) -> Built<'a> {
        Built {
            node_version: node,
            platform: Some(platform),
            arch: Some(arch),
        }
    }

    #[test]
    fn native_code_is_an_addon_a_binding_gyp_or_build_release_below_node_modules() {
        for path in [
            "node_modules/sharp/build/Release/sharp.node",
            "node_modules/x/build/Release/obj/x.o",
            "node_modules/bcrypt/binding.gyp",
            "apps/web/node_modules/@scope/pkg/lib/addon.node",
            "node_modules/a/node_modules/b/prebuilds/linux-x64/b.node",
        ] {
            assert!(is_native(path), "{path}");
        }
        for path in [
            "lib/addon.node",
            "build/Release/x.node",
            "node_modules/x/index.js",
            "node_modules/x/node.js",
            "node_modules/node_modules",
            "node_modules/x/Release/build",
        ] {
            assert!(!is_native(path), "{path}");
        }
    }

    #[test]
    fn native_code_needs_the_same_platform_arch_and_node_major() {
        let native = Some("node_modules/x/x.node");
        assert_eq!(
            check(built(Some("v20.11.1"), "linux", "x64"), &host(), native),
            Ok(vec![])
        );
        let err = check(built(Some("v20.11.1"), "linux", "arm64"), &host(), native).unwrap_err();
        assert_eq!(err.to_string(), "arch arm64 (built) vs x64 (this host)");
        let err = check(built(Some("v18.19.0"), "darwin", "x64"), &host(), native).unwrap_err();
        assert_eq!(
            err.to_string(),
            "platform darwin (built) vs linux (this host), Node.js v18.19.0 (built) vs v20.11.1 (this host)"
        );
        // The same major version is a warning only.
        let warnings = check(built(Some("v20.9.0"), "linux", "x64"), &host(), native).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn without_native_code_differences_are_warnings() {
        let warnings = check(built(Some("v18.19.0"), "linux", "arm64"), &host(), None).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("arch arm64"), "{warnings:?}");
        assert!(warnings[1].contains("Node.js v18.19.0"), "{warnings:?}");
    }

    #[test]
    fn a_seal_without_platform_is_a_warning_even_with_native_code() {
        let old = Built {
            node_version: Some("v20.11.1"),
            platform: None,
            arch: None,
        };
        let warnings = check(old, &host(), Some("node_modules/x/x.node")).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("platform or arch"), "{warnings:?}");
        assert_eq!(check(old, &host(), None), Ok(vec![]));
    }

    #[test]
    fn rust_names_map_to_node_names() {
        assert_eq!(node_platform("linux"), "linux");
        assert_eq!(node_platform("macos"), "darwin");
        assert_eq!(node_arch("x86_64"), "x64");
        assert_eq!(node_arch("aarch64"), "arm64");
        assert_eq!(major("v20.11.1"), Some(20));
        assert_eq!(major("22.0.0"), Some(22));
        assert_eq!(major("nightly"), None);
    }
}
