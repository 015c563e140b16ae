//! In-process upstreams standing in for the destination workload: a TCP echo server and a tiny
//! HTTP/1.1 server, both recording every connection and every byte they receive, so a test can
//! tell whether anything reached the destination.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// What the upstream does with a connection.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Echo every byte back.
    Echo,
    /// Answer every HTTP/1.1 request with 200 and this body (`text/html`). The response carries
    /// `x-upstream: NAME`, `x-seen-method`, `x-seen-path` and `x-seen-peer` (the TCP peer).
    Http { body: String },
}

/// One accepted connection.
#[derive(Clone, Debug)]
pub struct ConnRecord {
    pub peer: SocketAddr,
    pub received: Vec<u8>,
}

struct Shared {
    stop: AtomicBool,
    conns: Mutex<Vec<ConnRecord>>,
}

/// A running upstream; stops (and joins its acceptor) on drop.
pub struct Upstream {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

impl Upstream {
    /// Starts on `ip:port` (port 0 = any free port).
    pub fn start(name: &str, ip: IpAddr, port: u16, behaviour: Behaviour) -> Result<Upstream> {
        let listener = TcpListener::bind((ip, port))
            .with_context(|| format!("upstream {name}: binding {ip}:{port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let n = name.to_string();
        let acceptor = std::thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn(move || accept_loop(n, listener, s, behaviour))?;
        Ok(Upstream {
            name: name.to_string(),
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn echo(name: &str, ip: IpAddr) -> Result<Upstream> {
        Upstream::start(name, ip, 0, Behaviour::Echo)
    }

    pub fn http(name: &str, ip: IpAddr, body: &str) -> Result<Upstream> {
        Upstream::start(
            name,
            ip,
            0,
            Behaviour::Http {
                body: body.to_string(),
            },
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every connection accepted so far, with what it received up to now.
    pub fn connections(&self) -> Vec<ConnRecord> {
        self.shared
            .conns
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn connection_count(&self) -> usize {
        self.shared.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn total_bytes(&self) -> usize {
        self.connections().iter().map(|c| c.received.len()).sum()
    }

    /// Whether any connection received `needle`.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.connections()
            .iter()
            .any(|c| !needle.is_empty() && c.received.windows(needle.len()).any(|w| w == needle))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(name: String, listener: TcpListener, shared: Arc<Shared>, behaviour: Behaviour) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let index = match shared.conns.lock() {
                    Ok(mut c) => {
                        c.push(ConnRecord {
                            peer,
                            received: Vec::new(),
                        });
                        c.len() - 1
                    }
                    Err(_) => return,
                };
                let s = shared.clone();
                let b = behaviour.clone();
                let n = name.clone();
                // Connection threads are detached: they end on EOF, error or IO timeout.
                let _ = std::thread::Builder::new()
                    .name(format!("upstream-{name}-conn"))
                    .spawn(move || serve(&n, stream, peer, index, &s, &b));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn record(shared: &Shared, index: usize, data: &[u8]) {
    if let Ok(mut c) = shared.conns.lock() {
        if let Some(r) = c.get_mut(index) {
            r.received.extend_from_slice(data);
        }
    }
}

fn serve(
    name: &str,
    mut stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    shared: &Shared,
    b: &Behaviour,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    match b {
        Behaviour::Echo => {
            let mut buf = [0u8; 16384];
            while !shared.stop.load(Ordering::SeqCst) {
                let Some(data) = read_recorded(&mut stream, &mut buf, shared, index) else {
                    break;
                };
                if stream.write_all(data).is_err() {
                    break;
                }
            }
        }
        Behaviour::Http { body } => serve_http(name, &mut stream, peer, index, shared, body),
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads what the peer sends next into `buf` and records it as connection `index`'s; `None`
/// at the end of the stream or on an error.
fn read_recorded<'a>(
    stream: &mut TcpStream,
    buf: &'a mut [u8],
    shared: &Shared,
    index: usize,
) -> Option<&'a [u8]> {
    match stream.read(buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            let data = buf.get(..n).unwrap_or_default();
            record(shared, index, data);
            Some(data)
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn serve_http(
    name: &str,
    stream: &mut TcpStream,
    peer: SocketAddr,
    index: usize,
    shared: &Shared,
    body: &str,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(p) = find(&pending, b"\r\n\r\n") {
                break p + 4;
            }
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let Some(data) = read_recorded(stream, &mut buf, shared, index) else {
                return;
            };
            pending.extend_from_slice(data);
        };
        let head = String::from_utf8_lossy(pending.get(..head_end).unwrap_or_default()).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut content_length = 0usize;
        let mut close = false;
        let mut chunked = false;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                match k.as_str() {
                    "content-length" => content_length = v.parse().unwrap_or(0),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    _ => {}
                }
            }
        }
        pending.drain(..head_end);
        // Consume the request body (Content-Length, or chunked up to the terminating chunk).
        let body_done = |p: &[u8]| {
            if chunked {
                find(p, b"0\r\n\r\n").map(|i| i + 5)
            } else if p.len() >= content_length {
                Some(content_length)
            } else {
                None
            }
        };
        let consumed = loop {
            if let Some(n) = body_done(&pending) {
                break n;
            }
            let Some(data) = read_recorded(stream, &mut buf, shared, index) else {
                return;
            };
            pending.extend_from_slice(data);
        };
        pending.drain(..consumed.min(pending.len()));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
             x-upstream: {name}\r\nx-seen-method: {method}\r\nx-seen-path: {path}\r\n\
             x-seen-peer: {peer}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        if stream.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
