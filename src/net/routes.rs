//! What a plain HTTP request on the shared port gets: the viewer page and its files, `/metrics`
//! (to allowed addresses), `/healthz`; 404 for the rest. A WebSocket upgrade of `/ws` never
//! comes here (the transport answers it); an upgrade of any other path is a 404.
//!
//! Every response closes the connection (`Connection: close`): an HTTP request is never a hub
//! session, and a scrape a few times a minute does not need keep-alive.

use std::net::IpAddr;

use bytes::Bytes;
use ipnet::IpNet;

use crate::transport::http::{self, HttpError, HttpRequest};
use crate::transport::viewer;

/// What the router needs to know of the server.
pub struct Context<'a> {
    /// The client's address (`/metrics` is answered to loopback and `allow` only).
    pub peer: IpAddr,
    /// `--metrics-allow`.
    pub allow: &'a [IpNet],
    /// The server is shutting down: `/healthz` says 503.
    pub shutting_down: bool,
}

/// A response: its status (for the log) and the chunks to queue.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Head, and the body as its own chunk where it is static.
    pub chunks: Vec<Bytes>,
}

/// The response to `request`; `metrics` renders the exposition only when it is served.
pub fn route(
    request: &HttpRequest,
    context: &Context,
    metrics: impl FnOnce() -> String,
) -> Response {
    if request.wants_websocket() {
        let err = HttpError::NotFound(format!(
            "{} (the WebSocket is at {})",
            request.path,
            crate::transport::WEBSOCKET_PATH
        ));
        return refusal(err);
    }
    match request.path.as_str() {
        "/metrics" if metrics_allowed(context.peer, context.allow) => {
            let body = metrics();
            whole(200, crate::stats::CONTENT_TYPE, Bytes::from(body), &[])
        }
        "/metrics" => whole(
            403,
            "text/plain; charset=utf-8",
            Bytes::from_static(
                b"/metrics is served to loopback clients and --metrics-allow networks only\n",
            ),
            &[],
        ),
        "/healthz" if context.shutting_down => whole(
            503,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"shutting down\n"),
            &[("Cache-Control", "no-store")],
        ),
        "/healthz" => whole(
            200,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
            &[("Cache-Control", "no-store")],
        ),
        path => match viewer::asset(path) {
            Some((content_type, body)) => whole(
                200,
                content_type,
                Bytes::from_static(body.as_bytes()),
                viewer::HEADERS,
            ),
            None => refusal(HttpError::NotFound(path.to_owned())),
        },
    }
}

/// Whether `peer` may read `/metrics`: loopback always, and the `allow` networks.
pub fn metrics_allowed(peer: IpAddr, allow: &[IpNet]) -> bool {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    peer.is_loopback() || allow.iter().any(|net| net.contains(&peer))
}

/// The response to a refused request (its status and plain-text reason).
pub fn refusal(err: HttpError) -> Response {
    Response {
        status: err.status(),
        chunks: vec![err.response()],
    }
}

fn whole(status: u16, content_type: &str, body: Bytes, headers: &[(&str, &str)]) -> Response {
    let head = http::response_head(status, content_type, body.len(), headers);
    Response {
        status,
        chunks: vec![head, body],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, upgrade: bool) -> HttpRequest {
        HttpRequest {
            method: "GET".to_owned(),
            path: path.to_owned(),
            version: 1,
            upgrade: upgrade.then(|| "websocket".to_owned()),
            connection: None,
            sec_websocket_key: None,
            sec_websocket_version: None,
            origin: None,
        }
    }

    fn text(response: &Response) -> String {
        response
            .chunks
            .iter()
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect()
    }

    const LOCAL: Context = Context {
        peer: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        allow: &[],
        shutting_down: false,
    };

    #[test]
    fn each_path_gets_its_answer() {
        let page = route(&request("/", false), &LOCAL, || unreachable!());
        assert_eq!(page.status, 200);
        assert!(text(&page).contains("Content-Security-Policy"));
        assert_eq!(
            route(&request("/nope", false), &LOCAL, String::new).status,
            404
        );
        let healthz = route(&request("/healthz", false), &LOCAL, String::new);
        assert_eq!(healthz.status, 200);
        assert!(text(&healthz).ends_with("\r\n\r\nok\n"));
        let metrics = route(&request("/metrics", false), &LOCAL, || "x 1\n".to_owned());
        assert_eq!(metrics.status, 200);
        assert!(text(&metrics).ends_with("\r\n\r\nx 1\n"));
        let upgrade_elsewhere = route(&request("/", true), &LOCAL, String::new);
        assert_eq!(upgrade_elsewhere.status, 404);
        assert!(text(&upgrade_elsewhere).contains("the WebSocket is at /ws"));
        let closing = Context {
            shutting_down: true,
            ..LOCAL
        };
        assert_eq!(
            route(&request("/healthz", false), &closing, String::new).status,
            503
        );
    }

    #[test]
    fn metrics_go_to_loopback_and_allowed_networks_only() {
        let lan: IpAddr = "192.0.2.7".parse().unwrap();
        let allow: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        assert!(metrics_allowed("127.0.0.1".parse().unwrap(), &[]));
        assert!(metrics_allowed("::1".parse().unwrap(), &[]));
        assert!(metrics_allowed("::ffff:127.0.0.1".parse().unwrap(), &[]));
        assert!(!metrics_allowed(lan, &[]));
        assert!(metrics_allowed(lan, &allow));
        assert!(metrics_allowed("::ffff:192.0.2.7".parse().unwrap(), &allow));
        assert!(!metrics_allowed("198.51.100.1".parse().unwrap(), &allow));
        let context = Context {
            peer: lan,
            allow: &[],
            shutting_down: false,
        };
        let refused = route(&request("/metrics", false), &context, || unreachable!());
        assert_eq!(refused.status, 403);
    }
}
