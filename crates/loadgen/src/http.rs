//! One HTTP/1.1 client connection: sends a `GET` and reads exactly one response, framed by
//! `Content-Length`, chunked transfer coding or the end of the connection.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_LINE_BYTES: usize = 8 * 1024;
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The parts of a response that the load generator looks at; the body is read and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) release: Option<String>,
    pub(crate) keep_alive: bool,
}

/// Where a request stood when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Connect,
    Send,
    AwaitResponse,
    MidResponse,
}

/// Why a request got no complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    Connect(ErrorKind),
    Send(ErrorKind),
    Timeout(Stage),
    ClosedBeforeResponse,
    ResetBeforeResponse(ErrorKind),
    ClosedMidResponse,
    ResetMidResponse(ErrorKind),
    Malformed(String),
}

impl RequestError {
    /// The connection went away before one byte of the response arrived: on a reused
    /// keep-alive connection the server may have closed it just as the request was sent,
    /// so the request is safe to send again.
    pub(crate) fn closed_before_response(&self) -> bool {
        match self {
            Self::ClosedBeforeResponse | Self::ResetBeforeResponse(_) => true,
            Self::Send(kind) => matches!(
                kind,
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(kind) => write!(f, "connect: {kind}"),
            Self::Send(kind) => write!(f, "send: {kind}"),
            Self::Timeout(Stage::Connect) => f.write_str("timed out connecting"),
            Self::Timeout(Stage::Send) => f.write_str("timed out sending the request"),
            Self::Timeout(Stage::AwaitResponse) => {
                f.write_str("timed out waiting for the response")
            }
            Self::Timeout(Stage::MidResponse) => f.write_str("timed out mid-response"),
            Self::ClosedBeforeResponse => f.write_str("connection closed before any response byte"),
            Self::ResetBeforeResponse(kind) => write!(f, "{kind} before any response byte"),
            Self::ClosedMidResponse => f.write_str("connection closed mid-response"),
            Self::ResetMidResponse(kind) => write!(f, "{kind} mid-response"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

/// A TCP connection to the server with the bytes read but not yet consumed.
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    consumed: usize,
    received: usize,
    responses: u64,
}

impl Connection {
    pub(crate) fn open(addr: SocketAddr, deadline: Instant) -> Result<Self, RequestError> {
        let timeout = remaining(deadline).ok_or(RequestError::Timeout(Stage::Connect))?;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|error| {
            if is_timeout(&error) {
                RequestError::Timeout(Stage::Connect)
            } else {
                RequestError::Connect(error.kind())
            }
        })?;
        // Requests go out in one write; Nagle would only add latency to the next one.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buffer: Vec::new(),
            consumed: 0,
            received: 0,
            responses: 0,
        })
    }

    /// Whether a response already came over this connection, i.e. the server may have
    /// decided to close it while it sat idle.
    pub(crate) fn is_reused(&self) -> bool {
        self.responses > 0
    }

    /// Sends `GET path` and reads the whole response. With `close` the request says
    /// `Connection: close` and the connection must not be used again.
    pub(crate) fn get(
        &mut self,
        host: &str,
        path: &str,
        close: bool,
        deadline: Instant,
    ) -> Result<Response, RequestError> {
        let connection = if close { "close" } else { "keep-alive" };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: relman-loadgen\r\nAccept: */*\r\nConnection: {connection}\r\n\r\n"
        );
        self.received = self.buffer.len() - self.consumed;
        self.send(request.as_bytes(), deadline)?;
        let mut response = self.read_response(deadline)?;
        if close {
            response.keep_alive = false;
        }
        self.responses += 1;
        Ok(response)
    }

    fn send(&mut self, request: &[u8], deadline: Instant) -> Result<(), RequestError> {
        let timeout = remaining(deadline).ok_or(RequestError::Timeout(Stage::Send))?;
        self.stream
            .set_write_timeout(Some(timeout))
            .map_err(|error| RequestError::Send(error.kind()))?;
        self.stream.write_all(request).map_err(|error| {
            if is_timeout(&error) {
                RequestError::Timeout(Stage::Send)
            } else {
                RequestError::Send(error.kind())
            }
        })
    }

    fn read_response(&mut self, deadline: Instant) -> Result<Response, RequestError> {
        loop {
            let head = self.read_head(deadline)?;
            let head = Head::parse(&head)?;
            // Interim answers (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let mut keep_alive = head.keep_alive;
            match head.framing() {
                Framing::Empty => {}
                Framing::Length(length) => self.skip(length, deadline)?,
                Framing::Chunked => self.skip_chunked(deadline)?,
                Framing::UntilClose => {
                    self.skip_to_end(deadline)?;
                    keep_alive = false;
                }
            }
            return Ok(Response {
                status: head.status,
                release: head.release,
                keep_alive,
            });
        }
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Vec<u8>, RequestError> {
        let mut searched = 0;
        loop {
            let unread = &self.buffer[self.consumed..];
            if let Some(at) = find(&unread[searched..], b"\r\n\r\n") {
                let end = searched + at + 4;
                let head = unread[..end].to_vec();
                self.consumed += end;
                return Ok(head);
            }
            if unread.len() > MAX_HEAD_BYTES {
                return Err(RequestError::Malformed(format!(
                    "response head longer than {MAX_HEAD_BYTES} bytes"
                )));
            }
            searched = unread.len().saturating_sub(3);
            self.fill_required(deadline)?;
        }
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, RequestError> {
        let mut searched = 0;
        loop {
            let unread = &self.buffer[self.consumed..];
            if let Some(at) = find(&unread[searched..], b"\r\n") {
                let end = searched + at;
                let line = String::from_utf8_lossy(&unread[..end]).into_owned();
                self.consumed += end + 2;
                return Ok(line);
            }
            if unread.len() > MAX_LINE_BYTES {
                return Err(RequestError::Malformed(format!(
                    "chunk line longer than {MAX_LINE_BYTES} bytes"
                )));
            }
            searched = unread.len().saturating_sub(1);
            self.fill_required(deadline)?;
        }
    }

    fn skip(&mut self, mut length: u64, deadline: Instant) -> Result<(), RequestError> {
        loop {
            let unread = (self.buffer.len() - self.consumed) as u64;
            let take = unread.min(length);
            // `take` never exceeds the unread bytes, which fit in usize.
            self.consumed += take as usize;
            length -= take;
            if length == 0 {
                return Ok(());
            }
            self.fill_required(deadline)?;
        }
    }

    fn skip_chunked(&mut self, deadline: Instant) -> Result<(), RequestError> {
        loop {
            let line = self.read_line(deadline)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| RequestError::Malformed(format!("bad chunk size `{size}`")))?;
            if size == 0 {
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(());
            }
            self.skip(size, deadline)?;
            if !self.read_line(deadline)?.is_empty() {
                return Err(RequestError::Malformed(
                    "chunk not followed by CRLF".to_owned(),
                ));
            }
        }
    }

    fn skip_to_end(&mut self, deadline: Instant) -> Result<(), RequestError> {
        loop {
            self.consumed = self.buffer.len();
            if self.fill(deadline)? == 0 {
                return Ok(());
            }
        }
    }

    fn fill_required(&mut self, deadline: Instant) -> Result<(), RequestError> {
        if self.fill(deadline)? == 0 {
            return Err(if self.received == 0 {
                RequestError::ClosedBeforeResponse
            } else {
                RequestError::ClosedMidResponse
            });
        }
        Ok(())
    }

    /// Reads what the socket has, returning 0 at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> Result<usize, RequestError> {
        let stage = if self.received == 0 {
            Stage::AwaitResponse
        } else {
            Stage::MidResponse
        };
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        let filled = self.buffer.len();
        self.buffer.resize(filled + READ_CHUNK_BYTES, 0);
        let result = loop {
            let Some(timeout) = remaining(deadline) else {
                break Err(RequestError::Timeout(stage));
            };
            if let Err(error) = self.stream.set_read_timeout(Some(timeout)) {
                break Err(RequestError::ResetMidResponse(error.kind()));
            }
            match self.stream.read(&mut self.buffer[filled..]) {
                Ok(read) => break Ok(read),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if is_timeout(&error) => break Err(RequestError::Timeout(stage)),
                Err(error) if self.received == 0 => {
                    break Err(RequestError::ResetBeforeResponse(error.kind()));
                }
                Err(error) => break Err(RequestError::ResetMidResponse(error.kind())),
            }
        };
        let read = *result.as_ref().unwrap_or(&0);
        self.buffer.truncate(filled + read);
        self.received += read;
        result
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A parsed status line and the headers that matter here.
#[derive(Debug)]
struct Head {
    status: u16,
    release: Option<String>,
    keep_alive: bool,
    chunked: bool,
    content_length: Option<u64>,
}

impl Head {
    fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().unwrap_or_default();
        let http11 = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(malformed_status(status_line)),
        };
        let status = match status.parse::<u16>() {
            Ok(code) if status.len() == 3 && (100..600).contains(&code) => code,
            _ => return Err(malformed_status(status_line)),
        };
        let mut head = Self {
            status,
            release: None,
            keep_alive: http11,
            chunked: false,
            content_length: None,
        };
        for line in lines.take_while(|line| !line.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(RequestError::Malformed(format!("header line `{line}`")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let length = value
                    .parse()
                    .map_err(|_| RequestError::Malformed(format!("content-length `{value}`")))?;
                if head.content_length.is_some_and(|known| known != length) {
                    return Err(RequestError::Malformed(
                        "conflicting content-length".to_owned(),
                    ));
                }
                head.content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                        head.keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("x-release") {
                head.release = Some(value.to_owned());
            }
        }
        Ok(head)
    }

    fn framing(&self) -> Framing {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else if let Some(length) = self.content_length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        }
    }
}

fn malformed_status(line: &str) -> RequestError {
    RequestError::Malformed(format!("status line `{line}`"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn remaining(deadline: Instant) -> Option<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{Connection, RequestError, Response};

    /// Serves each canned answer, in order, on one connection, one per request read.
    fn answering(answers: Vec<&'static [u8]>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for answer in answers {
                crate::test_server::read_request(&mut stream).unwrap();
                stream.write_all(answer).unwrap();
            }
        });
        addr
    }

    fn get(connection: &mut Connection) -> Result<Response, RequestError> {
        connection.get("test", "/", false, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_bodies_in_turn() {
        let addr = answering(vec![
            b"HTTP/1.1 200 OK\r\nx-release: a\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Release: b\r\n\r\n3;ext=1\r\nabc\r\n0\r\ntrailer: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        ]);
        let mut connection =
            Connection::open(addr, Instant::now() + Duration::from_secs(5)).unwrap();
        assert!(!connection.is_reused());
        let release = |name: &str| Some(name.to_owned());
        assert_eq!(
            get(&mut connection),
            Ok(Response {
                status: 200,
                release: release("a"),
                keep_alive: true
            })
        );
        assert!(connection.is_reused());
        assert_eq!(
            get(&mut connection),
            Ok(Response {
                status: 201,
                release: release("b"),
                keep_alive: true
            })
        );
        assert_eq!(
            get(&mut connection),
            Ok(Response {
                status: 204,
                release: None,
                keep_alive: true
            })
        );
        assert_eq!(
            get(&mut connection),
            Ok(Response {
                status: 200,
                release: None,
                keep_alive: false
            })
        );
    }

    #[test]
    fn truncated_body_is_closed_mid_response() {
        let addr = answering(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let mut connection =
            Connection::open(addr, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(get(&mut connection), Err(RequestError::ClosedMidResponse));
    }

    #[test]
    fn garbage_status_line_is_malformed() {
        let addr = answering(vec![b"SMTP ready\r\n\r\n"]);
        let mut connection =
            Connection::open(addr, Instant::now() + Duration::from_secs(5)).unwrap();
        let error = get(&mut connection).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed response: status line `SMTP ready`"
        );
        assert!(!error.closed_before_response());
    }

    #[test]
    fn closed_before_any_byte_is_reported_as_such() {
        let addr = answering(vec![]);
        let mut connection =
            Connection::open(addr, Instant::now() + Duration::from_secs(5)).unwrap();
        let error = get(&mut connection).unwrap_err();
        assert!(error.closed_before_response(), "{error}");
    }
}
