//! The live viewer page, compiled into the binary: `GET /` on the shared port gives a
//! browser everything it needs, nothing is fetched from elsewhere and there is no build
//! step. The page's files live in `static/`; `viewer.js` imports the JavaScript client
//! module, `clients/js/roomcast.js` (the one browser and Node programs use, not a copy), as
//! `/roomcast.js`, and connects back to `/ws` on the same host.

/// The page (`/`).
pub const VIEWER_HTML: &str = include_str!("../../static/viewer.html");
/// The page's script (`/viewer.js`): rooms, floor plan, chat.
pub const VIEWER_JS: &str = include_str!("../../static/viewer.js");
/// The JavaScript client module (`/roomcast.js`), `clients/js/roomcast.js` as it is.
pub const ROOMCAST_JS: &str = include_str!("../../clients/js/roomcast.js");
/// The page's style sheet (`/viewer.css`).
pub const VIEWER_CSS: &str = include_str!("../../static/viewer.css");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Headers worth sending with every asset: revalidate (the files change with the binary),
/// no content sniffing, and a policy that lets the page load only its own files and open
/// WebSockets to its own host (`ws:`/`wss:` listed for browsers older than CSP 3, where
/// `'self'` does not cover them).
pub const HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
];

/// The content type and body served at `path` (query already removed), if any.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" => Some((HTML, VIEWER_HTML)),
        "/viewer.js" => Some((JAVASCRIPT, VIEWER_JS)),
        "/roomcast.js" => Some((JAVASCRIPT, ROOMCAST_JS)),
        "/viewer.css" => Some((CSS, VIEWER_CSS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_serves_its_file_with_its_type() {
        assert_eq!(asset("/"), Some((HTML, VIEWER_HTML)));
        assert_eq!(asset("/viewer.js"), Some((JAVASCRIPT, VIEWER_JS)));
        assert_eq!(asset("/roomcast.js"), Some((JAVASCRIPT, ROOMCAST_JS)));
        assert_eq!(asset("/viewer.css"), Some((CSS, VIEWER_CSS)));
        for missing in [
            "/index.html",
            "/ws",
            "/metrics",
            "viewer.js",
            "/../Cargo.toml",
            "",
        ] {
            assert_eq!(asset(missing), None, "{missing}");
        }
    }

    #[test]
    fn the_page_references_only_served_files() {
        assert!(VIEWER_HTML.contains(r#"<script type="module" src="/viewer.js"></script>"#));
        assert!(VIEWER_HTML.contains(r#"href="/viewer.css""#));
        assert!(VIEWER_JS.contains(r#"from "./roomcast.js""#));
        assert!(
            ROOMCAST_JS.contains("/ws`"),
            "connects to /ws on the same host"
        );
        for file in [VIEWER_HTML, VIEWER_JS, ROOMCAST_JS, VIEWER_CSS] {
            assert!(
                !file.contains("http://") && !file.contains("https://"),
                "nothing from elsewhere"
            );
        }
    }

    #[test]
    fn the_page_exposes_its_state_for_browser_tests() {
        assert!(VIEWER_HTML.contains(r#"<body data-state="connecting">"#));
        assert!(VIEWER_JS.contains("window.roomcast = state"));
        assert!(VIEWER_JS.contains(r#"setStatus("ready""#));
    }

    #[test]
    fn headers_fit_the_response_builder() {
        let head = super::super::http::response_head(200, HTML, VIEWER_HTML.len(), HEADERS);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(text.contains("\r\nContent-Security-Policy: default-src 'self';"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
