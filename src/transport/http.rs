//! HTTP/1.1 on the shared port, just enough for browsers: one `GET` request head per
//! connection, answered with a whole response and `Connection: close`, or upgraded to a
//! WebSocket with a `101`.
//!
//! Nothing here reads a socket. [`parse_head`] looks at the bytes received so far and says
//! "not yet", "here is the request and how many bytes it took", or why it is refused; the
//! response builders return the bytes to queue. Request bodies are never read: the server
//! only serves `GET`, and the connection closes after the response (or becomes a WebSocket,
//! whose first frames may follow the head in the same read: that is what `consumed` is for).
//!
//! Limits: the head is refused with 431 once it passes [`MAX_HEAD`] bytes or
//! [`MAX_HEADERS`] header lines, before it is complete, so a slow or endless head costs at
//! most 8 KiB of buffer. Each call parses from the start of the buffer, which the cap keeps
//! cheap.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

/// The most bytes a request head (request line, headers, blank line) may take.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header lines a request head may carry; browsers send about 15.
pub const MAX_HEADERS: usize = 64;

/// The only WebSocket version there is (RFC 6455); others are answered 426.
pub const WEBSOCKET_VERSION: &str = "13";

/// Whether a connection's first byte may start an HTTP request line. Every method is a token
/// of upper-case letters, while a length-prefixed frame starts with `0x00`, a line-mode one
/// with `{` and a TLS record with `0x16`, so one byte tells them apart.
pub fn looks_like_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// The parts of a request head the server acts on. Other headers are read past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Always `GET`: other methods are refused by [`parse_head`] with 405.
    pub method: String,
    /// The request target up to `?` or `#`, e.g. `/ws`. Not percent-decoded: the routes are
    /// plain ASCII.
    pub path: String,
    /// The minor version of `HTTP/1.x`: 0 or 1. A WebSocket upgrade needs 1.
    pub version: u8,
    /// `Upgrade`, several lines joined with `, ` as HTTP allows for lists.
    pub upgrade: Option<String>,
    /// `Connection`, several lines joined with `, `.
    pub connection: Option<String>,
    /// `Sec-WebSocket-Key`: 16 random bytes in base64 (24 characters).
    pub sec_websocket_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub sec_websocket_version: Option<String>,
    /// `Origin`, as the browser sent it; not checked here (there are no cookies to protect),
    /// kept for logs and a later allow-list.
    pub origin: Option<String>,
}

impl HttpRequest {
    /// Whether the client asks for a WebSocket (an `Upgrade` header naming `websocket`),
    /// valid or not: such a request is answered by [`websocket_accept`] and its refusals,
    /// never with a page.
    pub fn wants_websocket(&self) -> bool {
        self.upgrade
            .as_deref()
            .is_some_and(|value| has_token(value, "websocket"))
    }
}

/// Why a request is refused. Each variant maps to a status code and a small plain-text
/// response ([`HttpError::response`]); the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not an HTTP/1.x request head (httparse refused it), or a target that is not a path.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head passed [`MAX_HEAD`] bytes or [`MAX_HEADERS`] header lines.
    #[error("request head over {MAX_HEAD} bytes or {MAX_HEADERS} header lines")]
    HeadTooLarge,
    /// A method other than `GET`.
    #[error("method {0} is not allowed: only GET")]
    MethodNotAllowed(String),
    /// A path the server has nothing for. [`parse_head`] never returns it; the router does.
    #[error("nothing at {0}")]
    NotFound(String),
    /// A WebSocket upgrade that breaks RFC 6455 §4.2.1: missing or wrong `Upgrade`,
    /// `Connection` or `Sec-WebSocket-Key`, duplicated key, or HTTP/1.0.
    #[error("bad WebSocket upgrade: {0}")]
    BadUpgrade(&'static str),
    /// A `Sec-WebSocket-Version` other than 13.
    #[error("WebSocket version {0:?} is not supported: use 13")]
    UnsupportedVersion(String),
}

impl HttpError {
    /// The status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadUpgrade(_) => 400,
            HttpError::NotFound(_) => 404,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::UnsupportedVersion(_) => 426,
            HttpError::HeadTooLarge => 431,
        }
    }

    /// The whole response to write before closing: status, the headers the status calls for
    /// (`Allow` for 405, `Sec-WebSocket-Version` for 426), and the message as plain text.
    pub fn response(&self) -> Bytes {
        let extra: &[(&str, &str)] = match self {
            HttpError::MethodNotAllowed(_) => &[("Allow", "GET")],
            HttpError::UnsupportedVersion(_) => &[
                ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
                ("Upgrade", "websocket"),
            ],
            _ => &[],
        };
        let body = format!("{}\n", self);
        response(
            self.status(),
            "text/plain; charset=utf-8",
            body.as_bytes(),
            extra,
        )
    }
}

/// Parses the request head at the front of `buf` once it is complete.
///
/// `Ok(None)`: not complete yet, read more. `Ok(Some((request, consumed)))`: the head took
/// the first `consumed` bytes; what follows belongs to the next protocol (WebSocket frames
/// after an upgrade). Errors are final: answer with [`HttpError::response`] and close.
/// Only `GET` is accepted (405 otherwise, once the head is complete).
pub fn parse_head(buf: &[u8]) -> Result<Option<(HttpRequest, usize)>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let consumed = match parsed.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(err) => return Err(HttpError::Malformed(err.to_string())),
    };
    // httparse fills these three on `Complete`; absent would be a broken parser, not input.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed("incomplete request line".to_owned()));
    };
    if method != "GET" {
        return Err(HttpError::MethodNotAllowed(method.to_owned()));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(
            "the request target must be a path starting with /".to_owned(),
        ));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target).to_owned();

    let mut request = HttpRequest {
        method: method.to_owned(),
        path,
        version,
        upgrade: None,
        connection: None,
        sec_websocket_key: None,
        sec_websocket_version: None,
        origin: None,
    };
    for header in parsed.headers.iter() {
        let name = header.name;
        let (slot, list) = if name.eq_ignore_ascii_case("upgrade") {
            (&mut request.upgrade, true)
        } else if name.eq_ignore_ascii_case("connection") {
            (&mut request.connection, true)
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            (&mut request.sec_websocket_key, false)
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            (&mut request.sec_websocket_version, false)
        } else if name.eq_ignore_ascii_case("origin") {
            (&mut request.origin, false)
        } else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(HttpError::Malformed(format!(
                "header {name} is not valid UTF-8"
            )));
        };
        let value = value.trim();
        match slot {
            Some(previous) if list => {
                previous.push_str(", ");
                previous.push_str(value);
            }
            Some(_) => {
                return Err(HttpError::Malformed(format!(
                    "header {name} appears more than once"
                )))
            }
            None => *slot = Some(value.to_owned()),
        }
    }
    Ok(Some((request, consumed)))
}

/// A whole response: status line, `Content-Type`, `Content-Length`, `Connection: close`,
/// `extra_headers`, then `body`. Copies the body; for large static bodies queue
/// [`response_head`] and the body as two chunks instead.
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Bytes {
    let head = response_head(status, content_type, body.len(), extra_headers);
    let mut out = BytesMut::with_capacity(head.len() + body.len());
    out.put_slice(&head);
    out.put_slice(body);
    out.freeze()
}

/// The head of a response whose body of `body_len` bytes is queued separately (a
/// `&'static str` asset as `Bytes::from_static` costs no copy).
///
/// Header names and values come from the server's own code, never from a request; a CR or
/// LF in them is a programming error (checked in debug builds).
pub fn response_head(
    status: u16,
    content_type: &str,
    body_len: usize,
    extra_headers: &[(&str, &str)],
) -> Bytes {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\nConnection: close\r\n",
        reason(status)
    );
    push_headers(&mut head, extra_headers);
    head.push_str("\r\n");
    Bytes::from(head)
}

/// The `101 Switching Protocols` reply to a WebSocket upgrade, after checking the request
/// against RFC 6455 §4.2.1. No subprotocol and no extension (so no permessage-deflate) is
/// ever accepted: every server frame is a plain text frame.
pub fn websocket_accept(request: &HttpRequest) -> Result<Bytes, HttpError> {
    if request.method != "GET" {
        return Err(HttpError::MethodNotAllowed(request.method.clone()));
    }
    if request.version < 1 {
        return Err(HttpError::BadUpgrade("a WebSocket upgrade needs HTTP/1.1"));
    }
    if !request.wants_websocket() {
        return Err(HttpError::BadUpgrade("Upgrade must name websocket"));
    }
    if !request
        .connection
        .as_deref()
        .is_some_and(|value| has_token(value, "upgrade"))
    {
        return Err(HttpError::BadUpgrade("Connection must include upgrade"));
    }
    match request.sec_websocket_version.as_deref() {
        Some(WEBSOCKET_VERSION) => {}
        Some(other) => return Err(HttpError::UnsupportedVersion(other.to_owned())),
        None => return Err(HttpError::UnsupportedVersion(String::new())),
    }
    let Some(key) = request.sec_websocket_key.as_deref() else {
        return Err(HttpError::BadUpgrade("Sec-WebSocket-Key is missing"));
    };
    if !is_websocket_key(key) {
        return Err(HttpError::BadUpgrade(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut head = String::with_capacity(160);
    head.push_str("HTTP/1.1 101 Switching Protocols\r\n");
    push_headers(
        &mut head,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", &accept),
        ],
    );
    head.push_str("\r\n");
    Ok(Bytes::from(head))
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn push_headers(head: &mut String, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        debug_assert!(
            !name.contains(['\r', '\n']) && !value.contains(['\r', '\n']),
            "header {name:?} would split the response"
        );
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
}

/// Whether a comma-separated header value holds `token`, ignoring ASCII case
/// (`Connection: keep-alive, Upgrade`).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// 16 bytes in base64 are exactly 22 alphabet characters and `==`.
fn is_websocket_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws?x=1 HTTP/1.1\r\n\
        Host: localhost:42069\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Origin: http://localhost:42069\r\n\
        \r\n";

    fn parse(text: &str) -> Result<Option<(HttpRequest, usize)>, HttpError> {
        parse_head(text.as_bytes())
    }

    fn request(text: &str) -> HttpRequest {
        parse(text).unwrap().unwrap().0
    }

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_head_is_parsed_once_complete_and_says_where_it_ends() {
        let wire = [UPGRADE.as_bytes(), &[0x81, 0x85]].concat();
        for cut in 0..UPGRADE.len() {
            assert_eq!(parse_head(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        let (request, consumed) = parse_head(&wire).unwrap().unwrap();
        assert_eq!(
            consumed,
            UPGRADE.len(),
            "the frame bytes after it are not taken"
        );
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/ws", "query removed");
        assert_eq!(request.version, 1);
        assert_eq!(request.upgrade.as_deref(), Some("websocket"));
        assert_eq!(request.connection.as_deref(), Some("keep-alive, Upgrade"));
        assert_eq!(
            request.sec_websocket_key.as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert_eq!(request.sec_websocket_version.as_deref(), Some("13"));
        assert_eq!(request.origin.as_deref(), Some("http://localhost:42069"));
        assert!(request.wants_websocket());
    }

    #[test]
    fn header_names_are_case_insensitive_and_lists_are_joined() {
        let request = request(
            "GET / HTTP/1.1\r\nupgrade: WebSocket\r\nCONNECTION: Upgrade\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(request.connection.as_deref(), Some("Upgrade, close"));
        assert!(request.wants_websocket());
        assert!(!self::request("GET / HTTP/1.1\r\n\r\n").wants_websocket());
    }

    #[test]
    fn the_101_carries_the_rfc_accept_key() {
        let reply = websocket_accept(&request(UPGRADE)).unwrap();
        // The worked example of RFC 6455 §1.3.
        assert_eq!(
            text(&reply),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert!(!text(&reply).contains("Extensions"), "nothing negotiated");
    }

    #[test]
    fn bad_upgrades_are_refused_with_their_status() {
        let cases = [
            ("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 400),
            (
                "Connection: keep-alive, Upgrade\r\n",
                "Connection: close\r\n",
                400,
            ),
            (
                "Sec-WebSocket-Version: 13\r\n",
                "Sec-WebSocket-Version: 8\r\n",
                426,
            ),
            ("Sec-WebSocket-Version: 13\r\n", "", 426),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: short\r\n",
                400,
            ),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400),
            ("HTTP/1.1", "HTTP/1.0", 400),
        ];
        for (from, to, status) in cases {
            let head = UPGRADE.replacen(from, to, 1);
            let err = websocket_accept(&request(&head)).unwrap_err();
            assert_eq!(err.status(), status, "{from:?} -> {to:?}: {err}");
        }
        let err = websocket_accept(&request(&UPGRADE.replacen("Version: 13", "Version: 8", 1)))
            .unwrap_err();
        let reply = err.response();
        assert!(text(&reply).starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text(&reply).contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn a_repeated_key_is_malformed() {
        let head = UPGRADE.replacen(
            "Origin",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nOrigin",
            1,
        );
        assert!(matches!(parse(&head), Err(HttpError::Malformed(_))));
    }

    #[test]
    fn only_get_is_served() {
        let err = parse("POST /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert_eq!(err, HttpError::MethodNotAllowed("POST".to_owned()));
        let reply = err.response();
        assert!(text(&reply).starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text(&reply).contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn malformed_heads_are_400() {
        for head in [
            "GET /\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET http://example.org/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "{\"system\":\"ping\"}\n",
        ] {
            let err = parse(head).unwrap_err();
            assert_eq!(err.status(), 400, "{head:?}: {err}");
        }
    }

    #[test]
    fn an_endless_head_is_refused_at_the_cap() {
        let mut head = String::from("GET / HTTP/1.1\r\nX-Pad: ");
        head.push_str(&"a".repeat(MAX_HEAD - head.len() - 1));
        assert_eq!(parse(&head), Ok(None), "one byte under the cap: wait");
        head.push('a');
        assert_eq!(parse(&head), Err(HttpError::HeadTooLarge));
        assert_eq!(HttpError::HeadTooLarge.status(), 431);

        let mut complete = String::from("GET / HTTP/1.1\r\nX-Pad: ");
        complete.push_str(&"a".repeat(MAX_HEAD));
        complete.push_str("\r\n\r\n");
        assert_eq!(
            parse(&complete),
            Err(HttpError::HeadTooLarge),
            "complete but over"
        );
    }

    #[test]
    fn too_many_header_lines_are_431() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: 1\r\n"));
        }
        head.push_str("\r\n");
        assert_eq!(parse(&head), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn responses_carry_length_and_close() {
        let reply = response(
            200,
            "text/html; charset=utf-8",
            b"<p>hi</p>",
            &[("Cache-Control", "no-cache")],
        );
        assert_eq!(
            text(&reply),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\
             Connection: close\r\nCache-Control: no-cache\r\n\r\n<p>hi</p>"
        );
        let head = response_head(404, "text/plain", 0, &[]);
        assert!(text(&head).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(&head).ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn not_found_is_a_404_page() {
        let reply = HttpError::NotFound("/nope".to_owned()).response();
        assert!(text(&reply).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(&reply).ends_with("\r\n\r\nnothing at /nope\n"));
    }

    #[test]
    fn the_first_byte_tells_http_from_the_other_transports() {
        assert!(looks_like_http(b'G'));
        for first in [0u8, b'{', 0x16, b'g', b' '] {
            assert!(!looks_like_http(first), "{first:#x}");
        }
    }
}
