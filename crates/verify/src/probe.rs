//! The HTTP health probe (SPEC activate step 6): URL validation, one try, and the retried probe.

use std::io::Read;
use std::net::Ipv6Addr;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Failure};

/// How much of a body is read and searched. A health endpoint answers in bytes; anything bigger
/// is not worth holding in memory, so only its first MiB is compared (and the failure says so).
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

/// What to probe and what counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// A plain `http://host[:port]/path` URL (see [`validate_url`]); placeholders such as
    /// `{release}` must already be replaced by the caller.
    pub url: String,
    /// The status that counts as healthy; any other one, 3xx included, is a failure.
    pub status: u16,
    /// Text the body must contain, taken literally (the caller substitutes `{release}`).
    pub body_contains: Option<String>,
    /// How many tries [`probe`] makes at most; 0 is treated as 1.
    pub attempts: u32,
    /// The pause after a failed try before the next one.
    pub interval: Duration,
    /// The bound of one whole try: connect, response head and body.
    pub timeout: Duration,
}

/// What a passing [`probe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// The number of the try that passed, from 1.
    pub attempts: u32,
    /// Time from the start of the first try to the end of the passing one.
    pub elapsed: Duration,
    /// The status of the passing answer.
    pub status: u16,
}

/// Probes `spec.url` until one try passes, at most `spec.attempts` times, pausing
/// `spec.interval` after each failed try.
///
/// An invalid URL fails at once with [`Error::InvalidUrl`], without any try.
pub fn probe(spec: &ProbeSpec) -> Result<ProbeReport, Error> {
    validate_url(&spec.url)?;
    let attempts = spec.attempts.max(1);
    let started = Instant::now();
    let mut last = None;
    for attempt in 1..=attempts {
        match check_once(spec) {
            Ok(status) => {
                return Ok(ProbeReport {
                    attempts: attempt,
                    elapsed: started.elapsed(),
                    status,
                });
            }
            Err(failure) => last = Some(failure),
        }
        if attempt < attempts {
            thread::sleep(spec.interval);
        }
    }
    Err(Error::Probe {
        url: spec.url.clone(),
        attempts,
        // The loop ran at least once and every pass through it that did not return set `last`.
        last: last.unwrap_or(Failure::Refused),
    })
}

/// Makes one GET to `spec.url` and checks its status and body; returns the status on success.
///
/// The try is bounded by `spec.timeout` in total, never follows a redirect (a 3xx is just a
/// status), ignores any proxy settings of the environment (the app is on loopback) and uses a
/// fresh connection, so a kept-alive connection to an old worker can never answer for a new one.
pub fn check_once(spec: &ProbeSpec) -> Result<u16, Failure> {
    validate_url(&spec.url).map_err(|error| match error {
        Error::InvalidUrl { reason, .. } => Failure::InvalidUrl { reason },
        other => Failure::InvalidUrl {
            reason: other.to_string(),
        },
    })?;
    let response = agent(spec.timeout)
        .get(&spec.url)
        .call()
        .map_err(|error| failure_from(error, &spec.url, spec.timeout))?;
    let status = response.status().as_u16();
    if status != spec.status {
        return Err(Failure::Status {
            status,
            expected: spec.status,
        });
    }
    let Some(needle) = &spec.body_contains else {
        return Ok(status);
    };
    // One byte past the limit tells a body of exactly 1 MiB from a larger one.
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|error| failure_from(ureq::Error::from(error), &spec.url, spec.timeout))?;
    let truncated = body.len() > MAX_BODY_BYTES;
    body.truncate(MAX_BODY_BYTES);
    if String::from_utf8_lossy(&body).contains(needle.as_str()) {
        Ok(status)
    } else {
        Err(Failure::BodyMismatch {
            needle: needle.clone(),
            truncated,
        })
    }
}

/// The client of every try: any status is an answer, a redirect is not followed, the
/// environment's proxy is ignored (the app is on loopback), and no connection is kept, so a
/// kept-alive connection to an old worker can never answer for a new one.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .proxy(None)
        .max_idle_connections(0)
        .user_agent(concat!("relman-verify/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Names what went wrong with a try of `url` bounded by `timeout`.
pub(crate) fn failure_from(error: ureq::Error, url: &str, timeout: Duration) -> Failure {
    let timed_out = Failure::TimedOut {
        after_ms: timeout.as_millis(),
    };
    match error {
        ureq::Error::Timeout(_) => timed_out,
        ureq::Error::Io(error) => match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::Refused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => timed_out,
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Failure::Closed {
                detail: error.to_string(),
            },
            _ => Failure::Connection {
                detail: error.to_string(),
            },
        },
        ureq::Error::Protocol(error) => Failure::NotHttp {
            detail: error.to_string(),
        },
        ureq::Error::LargeResponseHeader(size, limit) => Failure::NotHttp {
            detail: format!("a response head of more than {size} bytes (limit {limit})"),
        },
        ureq::Error::HostNotFound => Failure::HostNotFound {
            host: host_of(url).unwrap_or_default().to_owned(),
        },
        ureq::Error::BadUri(reason) => Failure::InvalidUrl { reason },
        ureq::Error::Http(error) => Failure::InvalidUrl {
            reason: error.to_string(),
        },
        other => Failure::Connection {
            detail: other.to_string(),
        },
    }
}

/// Checks that `url` is a plain `http://host[:port][/path][?query]` URL, the only kind relman
/// probes: the app is on loopback, so there is no TLS, no credentials and no fragment.
///
/// Placeholders must be replaced first: `{port}` and `{release}` are rejected as such, so a
/// preflight URL is checked as `url.replace("{port}", "1")` at config load.
pub fn validate_url(url: &str) -> Result<(), Error> {
    url_problem(url).map_or(Ok(()), |reason| {
        Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        })
    })
}

fn url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return Some("it is empty".to_owned());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(
            "it contains whitespace or control characters: percent-encode them".to_owned(),
        );
    }
    for placeholder in ["{port}", "{release}"] {
        if url.contains(placeholder) {
            return Some(format!(
                "`{placeholder}` must be replaced before the URL is used"
            ));
        }
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("it has no scheme: write it as `http://host:port/path`".to_owned());
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Some(
            "https is not supported: relman probes the app on loopback over plain http, use `http://`"
                .to_owned(),
        );
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Some(format!("scheme `{scheme}` is not supported, use `http://`"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.contains('#') {
        return Some(
            "it has a `#fragment`, which is never sent to the server: remove it".to_owned(),
        );
    }
    if authority.contains('@') {
        return Some("it carries credentials (`user@`), which relman does not send".to_owned());
    }
    let (host, port) = match split_host_port(authority) {
        Ok(parts) => parts,
        Err(reason) => return Some(reason),
    };
    if host.is_empty() {
        return Some("it has no host".to_owned());
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(1..) if port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Some(format!("port `{port}` is not a number from 1 to 65535")),
        }
    }
    // The last word goes to the URI parser that ureq itself uses.
    if let Err(error) = url.parse::<ureq::http::Uri>() {
        return Some(format!("it does not parse: {error}"));
    }
    None
}

/// Splits `host[:port]` or `[v6]:port`; the host comes back without brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err("its IPv6 address has no closing `]`".to_owned());
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{address}` is not an IPv6 address"));
        }
        return match after {
            "" => Ok((address, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((address, Some(port))),
                None => Err(format!("unexpected `{after}` after the IPv6 address")),
            },
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!("host `{host}` is not a host name or IPv4 address"));
    }
    Ok((host, port))
}

fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    split_host_port(authority).ok().map(|(host, _)| host)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Reads a request head so the client is never answered before it has sent its request.
    fn read_head(stream: &mut TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
    }

    /// Serves `connections` connections; `answer(n)` gives the raw bytes for the n-th (from 0).
    fn serve(
        connections: usize,
        answer: impl Fn(usize) -> Vec<u8> + Send + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        thread::spawn(move || {
            for n in 0..connections {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                read_head(&mut stream);
                // The client may hang up early (huge body, timeout): that is its right.
                let _ = stream.write_all(&answer(n));
            }
        });
        (format!("http://{address}/health"), served)
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    fn spec(url: &str) -> ProbeSpec {
        ProbeSpec {
            url: url.to_owned(),
            status: 200,
            body_contains: None,
            attempts: 1,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(3),
        }
    }

    fn closed_port_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/health")
    }

    #[test]
    fn passes_on_200() {
        let (url, _) = serve(1, |_| response("200 OK", b"ok"));
        let report = probe(&spec(&url)).unwrap();
        assert_eq!(report.attempts, 1);
        assert_eq!(report.status, 200);
    }

    #[test]
    fn passes_on_a_close_delimited_http10_answer() {
        let (url, _) = serve(1, |_| b"HTTP/1.0 200 OK\r\n\r\nhealthy".to_vec());
        let mut spec = spec(&url);
        spec.body_contains = Some("healthy".to_owned());
        assert_eq!(check_once(&spec), Ok(200));
    }

    #[test]
    fn wrong_status_fails_and_names_both() {
        let (url, _) = serve(1, |_| response("500 Internal Server Error", b"boom"));
        let failure = check_once(&spec(&url)).unwrap_err();
        assert_eq!(
            failure,
            Failure::Status {
                status: 500,
                expected: 200
            }
        );
        assert_eq!(failure.to_string(), "status 500, expected 200");
    }

    #[test]
    fn a_redirect_is_just_a_status() {
        let (target, target_served) = serve(1, |_| response("200 OK", b"ok"));
        let (url, _) = serve(2, move |_| {
            format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes()
        });
        let mut spec = spec(&url);
        assert_eq!(
            check_once(&spec),
            Err(Failure::Status {
                status: 302,
                expected: 200
            })
        );
        spec.status = 302;
        assert_eq!(check_once(&spec), Ok(302));
        assert_eq!(
            target_served.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[test]
    fn body_mismatch_fails_and_quotes_the_needle() {
        let (url, _) = serve(1, |_| response("200 OK", b"xyz"));
        let mut spec = spec(&url);
        spec.body_contains = Some("abc".to_owned());
        let failure = check_once(&spec).unwrap_err();
        assert_eq!(failure.to_string(), r#"body does not contain "abc""#);
    }

    #[test]
    fn body_match_passes() {
        let (url, _) = serve(1, |_| {
            response("200 OK", b"{\"release\":\"20260101000000\"}")
        });
        let mut spec = spec(&url);
        spec.body_contains = Some("20260101000000".to_owned());
        assert_eq!(check_once(&spec), Ok(200));
    }

    #[test]
    fn a_body_that_is_not_utf8_does_not_panic() {
        let (url, _) = serve(2, |_| response("200 OK", b"\xff\xfe\x80 release abc \xc3"));
        let mut spec = spec(&url);
        spec.body_contains = Some("abc".to_owned());
        assert_eq!(check_once(&spec), Ok(200));
        spec.body_contains = Some("zzz".to_owned());
        assert!(matches!(
            check_once(&spec),
            Err(Failure::BodyMismatch { .. })
        ));
    }

    #[test]
    fn release_placeholder_is_left_to_the_caller() {
        let (url, _) = serve(2, |n| match n {
            0 => response("200 OK", b"release 20260101000000"),
            _ => response("200 OK", b"literally {release}"),
        });
        let mut spec = spec(&url);
        spec.body_contains = Some("{release}".to_owned());
        assert!(matches!(
            check_once(&spec),
            Err(Failure::BodyMismatch { .. })
        ));
        assert_eq!(check_once(&spec), Ok(200));
    }

    #[test]
    fn refused_connection_is_named() {
        let failure = check_once(&spec(&closed_port_url())).unwrap_err();
        assert_eq!(failure, Failure::Refused);
        assert_eq!(failure.to_string(), "connection refused");
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        // Accept and hold the connection, saying nothing, until the client gives up.
        let holder = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        });
        let mut spec = spec(&url);
        spec.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let failure = check_once(&spec).unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(failure.to_string(), "timed out after 300 ms");
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        holder.join().unwrap();
    }

    #[test]
    fn a_body_that_never_ends_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let holder = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_head(&mut stream);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .unwrap();
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        });
        let mut spec = spec(&url);
        spec.timeout = Duration::from_millis(300);
        spec.body_contains = Some("ok".to_owned());
        let started = Instant::now();
        let failure = check_once(&spec).unwrap_err();
        assert_eq!(failure.to_string(), "timed out after 300 ms");
        assert!(started.elapsed() < Duration::from_millis(1500));
        holder.join().unwrap();
    }

    #[test]
    fn garbage_is_not_http() {
        let (url, _) = serve(1, |_| b"\x00\x01 certainly not http\r\n\r\n".to_vec());
        let failure = check_once(&spec(&url)).unwrap_err();
        assert!(matches!(failure, Failure::NotHttp { .. }), "{failure:?}");
        assert!(failure.to_string().starts_with("the answer is not HTTP: "));
    }

    #[test]
    fn a_silent_hangup_is_named() {
        let (url, _) = serve(1, |_| Vec::new());
        let failure = check_once(&spec(&url)).unwrap_err();
        assert!(matches!(failure, Failure::Closed { .. }), "{failure:?}");
    }

    #[test]
    fn attempts_are_honoured() {
        let answer = |n| match n {
            0 | 1 => response("503 Service Unavailable", b"booting"),
            _ => response("200 OK", b"ok"),
        };
        let (url, served) = serve(3, answer);
        let mut spec = spec(&url);
        spec.attempts = 5;
        let report = probe(&spec).unwrap();
        assert_eq!(report.attempts, 3);
        assert_eq!(served.load(Ordering::SeqCst), 3);

        let (url, served) = serve(3, answer);
        spec.url = url.clone();
        spec.attempts = 2;
        let error = probe(&spec).unwrap_err();
        assert_eq!(served.load(Ordering::SeqCst), 2);
        assert_eq!(
            error.to_string(),
            format!(
                "`{url}` did not pass the probe after 2 attempts, last: status 503, expected 200"
            )
        );
    }

    #[test]
    fn the_final_error_names_url_attempts_and_last_failure() {
        let url = closed_port_url();
        let mut spec = spec(&url);
        spec.attempts = 1;
        let error = probe(&spec).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`{url}` did not pass the probe after 1 attempt, last: connection refused")
        );
        spec.attempts = 0;
        assert!(matches!(
            probe(&spec),
            Err(Error::Probe { attempts: 1, .. })
        ));
    }

    #[test]
    fn huge_body_is_searched_in_its_first_mib_only() {
        let mut body = b"ready ".to_vec();
        body.resize(5 * MAX_BODY_BYTES, b'x');
        body.extend_from_slice(b" far-away");
        let body = Arc::new(body);
        let (url, _) = serve(2, move |_| response("200 OK", &body));
        let mut spec = spec(&url);
        spec.body_contains = Some("ready".to_owned());
        assert_eq!(check_once(&spec), Ok(200));
        spec.body_contains = Some("far-away".to_owned());
        let failure = check_once(&spec).unwrap_err();
        assert_eq!(
            failure,
            Failure::BodyMismatch {
                needle: "far-away".to_owned(),
                truncated: true
            }
        );
        assert!(failure.to_string().contains("first 1 MiB"));
    }

    #[test]
    fn accepts_plain_http_urls() {
        for url in [
            "http://127.0.0.1:3000/health",
            "http://127.0.0.1:3000",
            "http://localhost/",
            "HTTP://localhost/api/health?deep=1",
            "http://[::1]:8080/health",
            "http://my-app.internal:80/x",
        ] {
            assert!(validate_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn rejects_https_with_a_hint() {
        let error = validate_url("https://127.0.0.1/health").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("invalid URL `https://127.0.0.1/health`: https is not supported"),
            "{message}"
        );
        assert!(message.contains("`http://`"), "{message}");
        // Neither the probe nor one try go anywhere with it.
        assert!(matches!(
            probe(&spec("https://127.0.0.1/")),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_once(&spec("https://127.0.0.1/")),
            Err(Failure::InvalidUrl { .. })
        ));
    }

    #[test]
    fn rejects_malformed_urls() {
        for url in [
            "",
            "127.0.0.1:3000/health",
            "ftp://127.0.0.1/health",
            "http://",
            "http:///health",
            "http://:3000/health",
            "http://127.0.0.1:/health",
            "http://127.0.0.1:0/health",
            "http://127.0.0.1:99999/health",
            "http://127.0.0.1:30a0/health",
            "http://127.0.0.1:+80/health",
            "http://user:secret@127.0.0.1/health",
            "http://127.0.0.1/health#top",
            "http://127.0.0.1/he alth",
            "http://127.0.0.1:{port}/health",
            "http://127.0.0.1/{release}",
            "http://[::1/health",
            "http://[nope]:80/health",
            "http://exa%mple/health",
        ] {
            assert!(
                matches!(validate_url(url), Err(Error::InvalidUrl { .. })),
                "accepted {url:?}"
            );
        }
    }
}
