//! Discovery of the pages worth asking a Next.js release for, read from its build's own
//! manifests (`verify.routes` left unset).
//!
//! Only static, parameter-free pages are taken: a dynamic route needs a parameter relman
//! cannot invent, and a route handler (`app/**/route.js`, `pages/api/**`) may act on a GET
//! (send a mail, bump a counter), so it is never requested. Next.js internals (`/_not-found`,
//! `/_error`, `/404`, ...) answer errors by design and are left out too.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// App Router: `"/pricing/page": "/pricing"`, route groups already taken out of the value.
const APP_PATHS: &str = ".next/app-path-routes-manifest.json";
/// Pages Router: `"/about": "pages/about.html"`.
const PAGES: &str = ".next/server/pages-manifest.json";
/// Carries `basePath`.
const ROUTES: &str = ".next/routes-manifest.json";
/// Carries the build's config, `trailingSlash` among it.
const SERVER_FILES: &str = ".next/required-server-files.json";

/// Pages Router entries that are not pages users visit.
const PAGES_INTERNAL: [&str; 5] = ["/_app", "/_document", "/_error", "/404", "/500"];

/// The static, parameter-free page routes of the Next.js build in `release`, `/` first, then
/// shortest first, then in lexicographic order, at most `limit` of them; `basePath` is
/// prefixed, a trailing `/` added when the build has `trailingSlash` (else every page would
/// answer a redirect, which proves nothing), and characters that a URL path cannot carry
/// are percent-encoded.
///
/// A release without the manifests (not a Next.js build) has no routes: an empty list. A
/// manifest that is there but unreadable or not the JSON Next.js writes is an error naming it.
pub fn discover_routes(release: &Path, limit: usize) -> Result<Vec<String>, Error> {
    let app_paths = read_json(&release.join(APP_PATHS))?;
    let pages = read_json(&release.join(PAGES))?;
    if app_paths.is_none() && pages.is_none() {
        return Ok(Vec::new());
    }
    let mut routes = BTreeSet::new();
    if let Some((path, manifest)) = app_paths {
        let entries: BTreeMap<String, String> = serde_json::from_value(manifest)
            .map_err(|source| Error::BadManifest { path, source })?;
        routes.extend(
            entries
                .into_iter()
                .filter(|(entry, _)| entry.ends_with("/page"))
                .map(|(_, route)| route)
                .filter(|route| is_static_page(route)),
        );
    }
    if let Some((path, manifest)) = pages {
        let entries: BTreeMap<String, String> = serde_json::from_value(manifest)
            .map_err(|source| Error::BadManifest { path, source })?;
        routes.extend(
            entries
                .into_keys()
                .filter(|route| is_static_page(route))
                .filter(|route| !PAGES_INTERNAL.contains(&route.as_str()))
                .filter(|route| route != "/api" && !route.starts_with("/api/")),
        );
    }
    let base_path = base_path(release)?;
    let trailing_slash = trailing_slash(release)?;

    let mut routes: Vec<String> = routes.into_iter().collect();
    routes.sort_by(|a, b| (a != "/", a.len(), a).cmp(&(b != "/", b.len(), b)));
    routes.truncate(limit);
    Ok(routes
        .into_iter()
        .map(|route| {
            let mut url_path = format!("{base_path}{route}");
            // `basePath` + `/` is served at `basePath` itself unless `trailingSlash` is set.
            if url_path.len() > 1 && url_path.ends_with('/') != trailing_slash {
                if trailing_slash {
                    url_path.push('/');
                } else {
                    url_path.pop();
                }
            }
            encode_path(&url_path)
        })
        .collect())
}

/// A route without parameters (`[slug]`), parallel slots (`@modal`), interception or group
/// markers (`(..)`), and outside Next.js's private and internal `_` segments.
fn is_static_page(route: &str) -> bool {
    route.starts_with('/')
        && !route.contains(['[', '@', '('])
        && !route.split('/').any(|segment| segment.starts_with('_'))
}

/// `basePath` from the routes manifest: empty when unset or the manifest is missing.
fn base_path(release: &Path) -> Result<String, Error> {
    let Some((path, manifest)) = read_json(&release.join(ROUTES))? else {
        return Ok(String::new());
    };
    let base_path = match manifest.get("basePath") {
        None | Some(serde_json::Value::Null) => return Ok(String::new()),
        Some(serde_json::Value::String(base_path)) => base_path.clone(),
        Some(other) => {
            return Err(Error::BadBasePath {
                path,
                base_path: other.to_string(),
            });
        }
    };
    // Next.js itself insists on `/docs`: a leading `/`, no trailing one.
    let plain = base_path.is_empty()
        || (base_path.starts_with('/')
            && !base_path.ends_with('/')
            && !base_path.contains(['?', '#'])
            && !base_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control()));
    if plain {
        Ok(base_path)
    } else {
        Err(Error::BadBasePath { path, base_path })
    }
}

/// `trailingSlash` from the build's config: false when unset or the file is missing (older
/// builds, or one without a server).
fn trailing_slash(release: &Path) -> Result<bool, Error> {
    let Some((_, files)) = read_json(&release.join(SERVER_FILES))? else {
        return Ok(false);
    };
    Ok(files
        .get("config")
        .and_then(|config| config.get("trailingSlash"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false))
}

/// The manifest at `path` as JSON, or `None` when there is none.
fn read_json(path: &Path) -> Result<Option<(PathBuf, serde_json::Value)>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::ReadManifest {
                path: path.to_owned(),
                source,
            });
        }
    };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(Some((path.to_owned(), value))),
        Err(source) => Err(Error::BadManifest {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Percent-encodes what may not stand in a URL path as is (a space, `%`, `?`, non-ASCII):
/// Next.js decodes the path before it matches it, so `/über` is asked as `/%C3%BCber`.
fn encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        let plain = byte.is_ascii_alphanumeric() || b"/-._~!$&'*+,;=:".contains(&byte);
        if plain {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use std::fs;

    use tempfile::TempDir;

    use super::*;

    /// A release directory with the given `.next` files.
    fn release(files: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    /// What `create-next-app` 16.4 writes, plus the pages of a small site.
    const APP_PATHS_JSON: &str = r#"{
        "/_not-found/page": "/_not-found",
        "/_global-error/page": "/_global-error",
        "/favicon.ico/route": "/favicon.ico",
        "/page": "/",
        "/pricing/page": "/pricing",
        "/(marketing)/about/page": "/about",
        "/blog/[slug]/page": "/blog/[slug]",
        "/api/health/route": "/api/health",
        "/@modal/login/page": "/@modal/login",
        "/photos/(..)feed/page": "/photos/(..)feed",
        "/docs/_drafts/page": "/docs/_drafts",
        "/sitemap.xml/route": "/sitemap.xml",
        "/blog/page": "/blog"
    }"#;

    #[test]
    fn create_next_app_gives_its_home_page_only() {
        let dir = release(&[(
            APP_PATHS,
            r#"{
                "/_not-found/page": "/_not-found",
                "/_global-error/page": "/_global-error",
                "/favicon.ico/route": "/favicon.ico",
                "/page": "/"
            }"#,
        )]);
        assert_eq!(discover_routes(dir.path(), 20).unwrap(), ["/"]);
    }

    #[test]
    fn app_router_pages_are_static_pages_only_in_order() {
        let dir = release(&[(APP_PATHS, APP_PATHS_JSON)]);
        assert_eq!(
            discover_routes(dir.path(), 20).unwrap(),
            ["/", "/blog", "/about", "/pricing"]
        );
    }

    #[test]
    fn pages_router_leaves_out_internals_api_and_dynamic_pages() {
        let dir = release(&[(
            PAGES,
            r#"{
                "/_app": "pages/_app.js",
                "/_document": "pages/_document.js",
                "/_error": "pages/_error.js",
                "/404": "pages/404.html",
                "/500": "pages/500.html",
                "/api": "pages/api.js",
                "/api/hello": "pages/api/hello.js",
                "/apiary": "pages/apiary.html",
                "/posts/[id]": "pages/posts/[id].js",
                "/about": "pages/about.html",
                "/": "pages/index.html"
            }"#,
        )]);
        assert_eq!(
            discover_routes(dir.path(), 20).unwrap(),
            ["/", "/about", "/apiary"]
        );
    }

    #[test]
    fn both_routers_are_merged_without_duplicates() {
        let dir = release(&[
            (APP_PATHS, r#"{"/page": "/", "/pricing/page": "/pricing"}"#),
            (
                PAGES,
                r#"{"/404": "pages/404.html", "/legacy": "pages/legacy.html", "/pricing": "pages/pricing.html"}"#,
            ),
        ]);
        assert_eq!(
            discover_routes(dir.path(), 20).unwrap(),
            ["/", "/legacy", "/pricing"]
        );
    }

    #[test]
    fn the_limit_keeps_the_home_page_and_the_shortest() {
        let dir = release(&[(APP_PATHS, APP_PATHS_JSON)]);
        assert_eq!(discover_routes(dir.path(), 2).unwrap(), ["/", "/blog"]);
        assert!(discover_routes(dir.path(), 0).unwrap().is_empty());
        let many: String = (0..30)
            .map(|n| format!("\"/p{n:02}/page\": \"/p{n:02}\""))
            .collect::<Vec<_>>()
            .join(",");
        let dir = release(&[(APP_PATHS, &format!("{{{many}}}"))]);
        let routes = discover_routes(dir.path(), 20).unwrap();
        assert_eq!(routes.len(), 20);
        assert_eq!(routes[0], "/p00");
        assert_eq!(routes[19], "/p19");
    }

    #[test]
    fn base_path_is_prefixed() {
        let dir = release(&[
            (APP_PATHS, r#"{"/page": "/", "/pricing/page": "/pricing"}"#),
            (
                ROUTES,
                r#"{"version": 3, "basePath": "/docs", "pages404": true}"#,
            ),
        ]);
        assert_eq!(
            discover_routes(dir.path(), 20).unwrap(),
            ["/docs", "/docs/pricing"]
        );
        let dir = release(&[
            (APP_PATHS, r#"{"/page": "/"}"#),
            (ROUTES, r#"{"version": 3, "basePath": ""}"#),
        ]);
        assert_eq!(discover_routes(dir.path(), 20).unwrap(), ["/"]);
    }

    #[test]
    fn trailing_slash_is_honoured() {
        let server_files =
            r#"{"version": 1, "config": {"trailingSlash": true, "basePath": "/docs"}}"#;
        let dir = release(&[
            (APP_PATHS, r#"{"/page": "/", "/pricing/page": "/pricing"}"#),
            (ROUTES, r#"{"basePath": "/docs"}"#),
            (SERVER_FILES, server_files),
        ]);
        assert_eq!(
            discover_routes(dir.path(), 20).unwrap(),
            ["/docs/", "/docs/pricing/"]
        );
        let dir = release(&[
            (APP_PATHS, r#"{"/page": "/", "/pricing/page": "/pricing"}"#),
            (SERVER_FILES, r#"{"config": {"trailingSlash": true}}"#),
        ]);
        assert_eq!(discover_routes(dir.path(), 20).unwrap(), ["/", "/pricing/"]);
    }

    #[test]
    fn odd_characters_are_percent_encoded() {
        let dir = release(&[(
            APP_PATHS,
            r#"{"/über/page": "/über", "/100%/page": "/100%", "/a b/page": "/a b"}"#,
        )]);
        let routes = discover_routes(dir.path(), 20).unwrap();
        assert_eq!(routes, ["/a%20b", "/100%25", "/%C3%BCber"]);
        for route in routes {
            crate::validate_url(&format!("http://127.0.0.1{route}")).unwrap();
        }
    }

    #[test]
    fn no_manifest_means_no_routes() {
        let dir = release(&[("package.json", "{}")]);
        assert!(discover_routes(dir.path(), 20).unwrap().is_empty());
        // A routes manifest alone names no page, and is not even read.
        let dir = release(&[(ROUTES, "not json"), (SERVER_FILES, "not json")]);
        assert!(discover_routes(dir.path(), 20).unwrap().is_empty());
    }

    #[test]
    fn a_broken_manifest_is_an_error_naming_it() {
        for (file, text) in [
            (APP_PATHS, "{\"/page\": \"/\""),
            (APP_PATHS, "[\"/\"]"),
            (PAGES, "{\"/about\": 1}"),
        ] {
            let dir = release(&[(file, text)]);
            let error = discover_routes(dir.path(), 20).unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, Error::BadManifest { .. }), "{message}");
            assert!(
                message.starts_with(&format!(
                    "the Next.js manifest `{}` is not valid: ",
                    dir.path().join(file).display()
                )),
                "{message}"
            );
        }
        let dir = release(&[(APP_PATHS, r#"{"/page": "/"}"#), (ROUTES, "not json")]);
        assert!(matches!(
            discover_routes(dir.path(), 20),
            Err(Error::BadManifest { path, .. }) if path.ends_with(ROUTES)
        ));
    }

    #[test]
    fn a_base_path_that_is_not_a_path_is_an_error() {
        for base_path in [r#""docs""#, r#""/docs/""#, r#""/do cs""#, "3"] {
            let dir = release(&[
                (APP_PATHS, r#"{"/page": "/"}"#),
                (ROUTES, &format!("{{\"basePath\": {base_path}}}")),
            ]);
            let error = discover_routes(dir.path(), 20).unwrap_err();
            assert!(matches!(error, Error::BadBasePath { .. }), "{error}");
            assert!(error.to_string().contains("basePath"), "{error}");
        }
    }

    #[test]
    fn an_unreadable_manifest_is_an_error_naming_it() {
        let dir = release(&[]);
        // A directory where the file should be: reading it fails with something else than
        // "not found".
        fs::create_dir_all(dir.path().join(APP_PATHS)).unwrap();
        let error = discover_routes(dir.path(), 20).unwrap_err();
        assert!(matches!(error, Error::ReadManifest { .. }), "{error}");
        assert!(error.to_string().contains(APP_PATHS), "{error}");
    }
}
