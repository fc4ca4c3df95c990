//! The operations console (`/`) and the staff web app (`/app/`): built from `server/web` by
//! `build.rs` and embedded in the binary, so one file deploys the whole of Vigil.
//!
//! Vite names every script, stylesheet and data file under `/assets/` by its content hash, so
//! those are cached forever (`immutable`); everything else (the two HTML pages, the service
//! worker, the manifest) is revalidated on each load (`no-cache` with an ETag), so a new
//! binary is picked up at the next reload. The build also writes brotli and gzip copies, served
//! when the browser accepts them. Every response carries a strict Content-Security-Policy:
//! scripts, styles and workers from this origin only.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use include_dir::{Dir, File, include_dir};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{AppState, Settings};

static BUNDLE: Dir<'static> = include_dir!("$OUT_DIR/web");

/// Present in the bundle only when `build.rs` could not build it; holds the reason.
const NOT_BUILT_MARKER: &str = ".vigil-web-not-built";

/// Paths that belong to the server, never to the bundle: unknown ones stay problem+json 404s.
const SERVER_PREFIXES: [&str; 2] = ["/api/", "/.well-known/"];

/// Why the console is missing from this binary, or `None` when it was built.
pub fn not_built_reason() -> Option<&'static str> {
    BUNDLE
        .get_file(NOT_BUILT_MARKER)
        .map(|f| f.contents_utf8().unwrap_or("unknown reason"))
}

/// What the console and the staff app read at start (`GET /web-config.json`).
#[derive(Debug, Clone, Serialize)]
pub struct WebConfig {
    /// An XYZ raster tile URL template, or `None` for the built-in offline country outlines.
    pub map_tiles_url: Option<String>,
    /// Credit line shown under the tiles.
    pub map_tiles_attribution: String,
}

impl WebConfig {
    /// The browser-facing part of the settings; a tile URL that is not http(s) is ignored.
    pub fn from_settings(settings: &Settings) -> Self {
        let url = settings.map_tiles_url.trim();
        let map_tiles_url = match origin_of(url) {
            Some(_) => Some(url.to_string()),
            None if url.is_empty() => None,
            None => {
                tracing::warn!(
                    map_tiles_url = url,
                    "map_tiles_url is not an http(s) URL; using the offline basemap"
                );
                None
            }
        };
        Self {
            map_tiles_url,
            map_tiles_attribution: settings.map_tiles_attribution.clone(),
        }
    }
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_len];
    if host.is_empty() || host.contains(['@', ' ', '\'', ';', ',']) {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

/// The Content-Security-Policy of every page: this origin only, plus the tile server if one
/// is configured. `'self'` covers the same-origin WebSocket in current browsers.
pub fn content_security_policy(config: &WebConfig) -> String {
    let tiles = config
        .map_tiles_url
        .as_deref()
        .and_then(origin_of)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{tiles}; \
         connect-src 'self'{tiles}; worker-src 'self'; manifest-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `/`, `/app/`, `/assets/…` and the other files of the bundle, as the router's fallback (so
/// every route the server itself defines wins), plus `/web-config.json`.
pub fn routes(settings: &Settings) -> Router<AppState> {
    if let Some(why) = not_built_reason() {
        tracing::warn!(
            reason = why,
            "the console and staff web app are NOT built into this binary; / shows why"
        );
    }
    let config = WebConfig::from_settings(settings);
    let csp = HeaderValue::from_str(&content_security_policy(&config))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let config = Arc::new(config);
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route(
            "/web-config.json",
            get(move || {
                let config = config.clone();
                async move {
                    (
                        [(header::CACHE_CONTROL, "no-cache")],
                        axum::Json(config.as_ref().clone()),
                    )
                }
            }),
        )
        .fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let csp = csp.clone();
            async move { serve_file(&method, uri.path(), &headers, csp) }
        })
}

fn serve_file(method: &Method, path: &str, headers: &HeaderMap, csp: HeaderValue) -> Response {
    if (method != Method::GET && method != Method::HEAD)
        || SERVER_PREFIXES.iter().any(|p| path.starts_with(p))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(name) = bundle_name(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(file) = BUNDLE.get_file(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (file, encoding) = pick_encoding(&name, file, headers);
    let etag = etag_of(file);
    let immutable = name.starts_with("assets/");
    let mut response = if !immutable
        && headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut head = Response::new(Body::empty());
        head.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(file.contents().len()),
        );
        head
    } else {
        Response::new(Body::from(file.contents()))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if compressible(&name) {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("geolocation=(self), camera=(), microphone=()"),
    );
    response
}

/// The bundle file a URL path names (`/` and `/app/` are their `index.html`); `None` for paths
/// that cannot name one (dot files, the precompressed copies, parent references).
fn bundle_name(path: &str) -> Option<String> {
    let trimmed = path.trim_start_matches('/');
    let name = if trimmed.is_empty() || trimmed.ends_with('/') {
        format!("{trimmed}index.html")
    } else {
        trimmed.to_string()
    };
    let hidden = name
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'));
    if hidden || name.ends_with(".br") || name.ends_with(".gz") {
        return None;
    }
    Some(name)
}

/// The brotli or gzip copy when the browser takes it and the build made one.
fn pick_encoding(
    name: &str,
    plain: &'static File<'static>,
    headers: &HeaderMap,
) -> (&'static File<'static>, Option<&'static str>) {
    let accepted = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for (coding, suffix) in [("br", "br"), ("gzip", "gz")] {
        if accepts(accepted, coding)
            && let Some(file) = BUNDLE.get_file(format!("{name}.{suffix}"))
        {
            return (file, Some(coding));
        }
    }
    (plain, None)
}

/// Whether an `Accept-Encoding` value takes `coding` (present, and not with `q=0`).
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        parts.next().is_some_and(|c| c.eq_ignore_ascii_case(coding))
            && !parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            })
    })
}

/// A strong ETag per file variant, computed once.
fn etag_of(file: &'static File<'static>) -> String {
    static TAGS: OnceLock<HashMap<&'static std::path::Path, String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = HashMap::new();
        let mut stack = vec![&BUNDLE];
        while let Some(dir) = stack.pop() {
            for f in dir.files() {
                let digest = Sha256::digest(f.contents());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                tags.insert(f.path(), format!("\"{hex}\""));
            }
            stack.extend(dir.dirs());
        }
        tags
    });
    tags.get(file.path()).cloned().unwrap_or_default()
}

fn extension(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, ext)| ext)
}

fn content_type(name: &str) -> &'static str {
    match extension(name) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "geojson" => "application/geo+json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn compressible(name: &str) -> bool {
    matches!(
        extension(name),
        "html" | "js" | "mjs" | "css" | "json" | "map" | "geojson" | "webmanifest" | "svg" | "txt"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_name_bundle_files() {
        assert_eq!(bundle_name("/").as_deref(), Some("index.html"));
        assert_eq!(bundle_name("/app/").as_deref(), Some("app/index.html"));
        assert_eq!(
            bundle_name("/assets/main-abc.js").as_deref(),
            Some("assets/main-abc.js")
        );
        assert_eq!(bundle_name("/.vigil-web-not-built"), None);
        assert_eq!(bundle_name("/assets/../.vigil-web-not-built"), None);
        assert_eq!(bundle_name("/assets/main-abc.js.br"), None);
        assert_eq!(bundle_name("//etc/passwd"), Some("etc/passwd".into()));
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("GZIP", "gzip"));
        assert!(!accepts("gzip, br;q=0", "br"));
        assert!(accepts("br;q=0.5", "br"));
        assert!(!accepts("", "gzip"));
        assert!(!accepts("brotli", "br"));
    }

    #[test]
    fn only_http_tile_servers_reach_the_policy() {
        assert_eq!(
            origin_of("https://tiles.example.org:8443/{z}/{x}/{y}.png"),
            Some("https://tiles.example.org:8443")
        );
        assert_eq!(
            origin_of("http://10.0.0.5/t/{z}/{x}/{y}"),
            Some("http://10.0.0.5")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a.example; script-src *"), None);
        assert_eq!(origin_of(""), None);

        let offline = WebConfig::from_settings(&Settings::default());
        assert_eq!(offline.map_tiles_url, None);
        let csp = content_security_policy(&offline);
        assert!(csp.contains("script-src 'self';") && csp.contains("connect-src 'self';"));

        let settings = Settings {
            map_tiles_url: "https://tiles.example.org/{z}/{x}/{y}.png".into(),
            ..Settings::default()
        };
        let csp = content_security_policy(&WebConfig::from_settings(&settings));
        assert!(csp.contains("img-src 'self' data: blob: https://tiles.example.org;"));
        assert!(csp.contains("connect-src 'self' https://tiles.example.org;"));
    }
}
