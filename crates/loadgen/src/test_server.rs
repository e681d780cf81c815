//! A tiny blocking HTTP server for the unit tests, whose every answer is scripted.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// What the server does with one request.
pub(crate) enum Answer {
    Ok {
        release: &'static str,
        close: bool,
    },
    Status(u16),
    /// Closes the connection without a byte of response.
    Drop,
    /// Never answers; waits for the client to go away.
    Hang,
}

/// Serves on a free loopback port until the test process ends. `script` is called with the
/// request's index on its connection and the connection's index in accept order.
pub(crate) fn serve(script: impl Fn(usize, usize) -> Answer + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    let connections = AtomicUsize::new(0);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let connection = connections.fetch_add(1, Ordering::Relaxed);
            let script = Arc::clone(&script);
            thread::spawn(move || {
                let _ = handle(stream, connection, &*script);
            });
        }
    });
    addr
}

fn handle(
    mut stream: TcpStream,
    connection: usize,
    script: &dyn Fn(usize, usize) -> Answer,
) -> io::Result<()> {
    for request in 0.. {
        if !read_request(&mut stream)? {
            return Ok(());
        }
        match script(request, connection) {
            Answer::Ok { release, close } => {
                let connection = if close { "close" } else { "keep-alive" };
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nx-release: {release}\r\nConnection: {connection}\r\nContent-Length: 3\r\n\r\nok\n"
                )?;
                if close {
                    return Ok(());
                }
            }
            Answer::Status(status) => {
                write!(
                    stream,
                    "HTTP/1.1 {status} Oops\r\nContent-Length: 0\r\n\r\n"
                )?;
            }
            Answer::Drop => return Ok(()),
            Answer::Hang => {
                while stream.read(&mut [0; 512])? > 0 {}
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads one request head (the client never pipelines); false at the end of the stream.
pub(crate) fn read_request(stream: &mut TcpStream) -> io::Result<bool> {
    let mut request = Vec::new();
    let mut chunk = [0; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(false);
        }
        request.extend_from_slice(&chunk[..read]);
    }
    Ok(true)
}
