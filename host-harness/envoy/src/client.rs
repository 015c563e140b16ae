//! The test clients: a TCP/mTLS connection from a chosen loopback source address (bound before
//! connecting, so each workload has its own address), an L4 probe (send bytes, see whether they
//! come back or the connection is closed), and a hand-rolled HTTP/1.1 client. Every socket
//! operation has a timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::certs::Identity;

/// Timeout for connecting, for the TLS handshake and for each read and write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection gave no (complete) answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// The TCP connection could not be made.
    Connect(String),
    /// The TLS handshake failed, or the server refused the client certificate (with TLS 1.3
    /// the client only learns that on its first read, as an alert).
    Handshake(String),
    /// The peer closed (EOF or reset) before a complete answer.
    Closed(String),
    /// Nothing happened within the timeout.
    Timeout(String),
    /// Anything else.
    Io(String),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(m) => write!(f, "connect failed: {m}"),
            ConnError::Handshake(m) => write!(f, "TLS handshake refused: {m}"),
            ConnError::Closed(m) => write!(f, "connection closed: {m}"),
            ConnError::Timeout(m) => write!(f, "timed out: {m}"),
            ConnError::Io(m) => write!(f, "i/o error: {m}"),
        }
    }
}

impl std::error::Error for ConnError {}

/// Classifies an I/O error seen while reading or writing.
fn classify(e: &io::Error) -> ConnError {
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::AlertReceived(a) => {
                    ConnError::Handshake(format!("peer sent alert {a:?}"))
                }
                other => ConnError::Handshake(other.to_string()),
            };
        }
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ConnError::Timeout(e.to_string()),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ConnError::Closed(e.to_string()),
        _ => ConnError::Io(e.to_string()),
    }
}

/// Accepts any server certificate that chains to the trusted CA, whatever names it carries:
/// as in a mesh, where the client checks identities, not host names, and the test picks SNI
/// values freely.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS side of a connection to a listener.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The CA the server certificate must chain to.
    pub ca: CertificateDer<'static>,
    /// The client certificate to present (`None`: no client certificate).
    pub identity: Option<Arc<Identity>>,
    /// SNI to send (`None`: none).
    pub sni: Option<String>,
}

impl TlsClient {
    fn config(&self) -> Result<Arc<ClientConfig>, ConnError> {
        let bad = |e: rustls::Error| ConnError::Io(format!("TLS client configuration: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(bad)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ConnError::Io(format!("TLS verifier: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(bad)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier { inner }));
        let config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.cert_chain(), id.private_key())
                .map_err(bad)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// A connection to a listener: plain TCP or TLS over TCP.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Plain(s) => write!(f, "Conn::Plain({:?})", s.peer_addr()),
            Conn::Tls(s) => write!(f, "Conn::Tls({:?})", s.sock.peer_addr()),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// The local (source) address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn set_read_timeout(&self, t: Duration) {
        let _ = self
            .tcp()
            .set_read_timeout(Some(t.max(Duration::from_millis(1))));
    }

    /// Sends TLS close_notify (if TLS) and shuts the socket down.
    pub fn close(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

/// Opens a TCP connection from `source` (port 0: chosen by the kernel) to `dest`, then does
/// the TLS handshake if `tls` is given.
pub fn open(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
) -> Result<Conn, ConnError> {
    open_after(source, dest, tls, &[])
}

/// As [`open`], writing `preamble` (e.g. a PROXY protocol header) on the TCP connection
/// before the TLS handshake.
pub fn open_after(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
    preamble: &[u8],
) -> Result<Conn, ConnError> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| ConnError::Connect(e.to_string()))?;
    if let Some(src) = source {
        if src.port() != 0 {
            // A fixed source port may still be in TIME_WAIT from an earlier connection.
            let _ = socket.set_reuse_address(true);
        }
        socket
            .bind(&src.into())
            .map_err(|e| ConnError::Connect(format!("binding source {src}: {e}")))?;
    }
    socket
        .connect_timeout(&dest.into(), IO_TIMEOUT)
        .map_err(|e| ConnError::Connect(format!("{dest}: {e}")))?;
    let tcp: TcpStream = socket.into();
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| ConnError::Io(e.to_string()))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| ConnError::Io(e.to_string()))?;
    if !preamble.is_empty() {
        let mut raw = &tcp;
        raw.write_all(preamble).map_err(|e| classify(&e))?;
    }
    let Some(tls) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let config = tls.config()?;
    let server_name = match &tls.sni {
        Some(sni) => ServerName::try_from(sni.clone())
            .map_err(|e| ConnError::Io(format!("bad SNI {sni:?}: {e}")))?,
        // An IP address as the server name: rustls then sends no SNI.
        None => ServerName::IpAddress(dest.ip().into()),
    };
    let mut conn = ClientConnection::new(config, server_name)
        .map_err(|e| ConnError::Handshake(e.to_string()))?;
    let mut tcp = tcp;
    let deadline = Instant::now() + IO_TIMEOUT;
    while conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(ConnError::Timeout("TLS handshake".into()));
        }
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) => {
                return Err(match classify(&e) {
                    ConnError::Closed(m) | ConnError::Io(m) => ConnError::Handshake(m),
                    other => other,
                })
            }
        }
    }
    Ok(Conn::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

static PROBE_SEQ: AtomicU64 = AtomicU64::new(1);

/// What an L4 probe saw.
#[derive(Clone, Debug)]
pub struct L4Result {
    /// The source address the connection had (`None` if it never connected).
    pub local_addr: Option<SocketAddr>,
    /// The bytes sent: a unique token, so the upstream can be searched for them.
    pub payload: Vec<u8>,
    /// What came back (the echo upstream returns the payload).
    pub reply: Vec<u8>,
    /// How the connection failed or ended without a full echo: `None` if the whole payload
    /// came back.
    pub error: Option<ConnError>,
}

impl L4Result {
    /// The payload came back (it went through Envoy to the echo upstream and back).
    pub fn echoed(&self) -> bool {
        self.error.is_none() && self.reply == self.payload
    }

    /// The connection was refused or closed by the proxy (handshake refusal, EOF or reset),
    /// rather than timing out or failing to connect.
    pub fn closed(&self) -> bool {
        matches!(
            self.error,
            Some(ConnError::Closed(_)) | Some(ConnError::Handshake(_))
        )
    }

    /// Allowed end to end: echoed, and the upstream received the payload.
    pub fn allowed(&self, upstream: &super::upstream::Upstream) -> bool {
        self.echoed() && upstream.saw(&self.payload)
    }

    /// Denied at L4: the proxy closed the connection and no byte of it reached the upstream.
    pub fn denied(&self, upstream: &super::upstream::Upstream) -> bool {
        self.closed() && !upstream.saw(&self.payload)
    }
}

/// Connects, sends a unique line, and reads until it comes back, the connection is closed,
/// or `IO_TIMEOUT` passes.
pub fn tcp_probe(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
) -> L4Result {
    tcp_probe_after(source, dest, tls, &[])
}

/// As [`tcp_probe`], writing `preamble` before the TLS handshake (see [`open_after`]).
pub fn tcp_probe_after(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
    preamble: &[u8],
) -> L4Result {
    let seq = PROBE_SEQ.fetch_add(1, Ordering::SeqCst);
    let payload = format!("authz-probe-{}-{seq}\n", std::process::id()).into_bytes();
    let mut result = L4Result {
        local_addr: None,
        payload,
        reply: Vec::new(),
        error: None,
    };
    let mut conn = match open_after(source, dest, tls, preamble) {
        Ok(c) => c,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    result.local_addr = conn.local_addr().ok();
    if let Err(e) = conn.write_all(&result.payload).and_then(|_| conn.flush()) {
        result.error = Some(classify(&e));
        return result;
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 4096];
    while result.reply.len() < result.payload.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            result.error = Some(ConnError::Timeout(format!(
                "{} of {} bytes echoed",
                result.reply.len(),
                result.payload.len()
            )));
            break;
        }
        conn.set_read_timeout(left);
        match conn.read(&mut buf) {
            Ok(0) => {
                result.error = Some(ConnError::Closed("EOF".into()));
                break;
            }
            Ok(n) => result
                .reply
                .extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) => {
                result.error = Some(classify(&e));
                break;
            }
        }
    }
    if result.error.is_none() && result.reply != result.payload {
        result.error = Some(ConnError::Io("reply differs from what was sent".into()));
    }
    conn.close();
    result
}

/// An HTTP/1.1 request.
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The Host header (`:authority`).
    pub host: String,
    /// Extra headers, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str, host: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            self.method, self.path, self.host
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            out.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        out.push_str("connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// An HTTP response.
#[derive(Clone, Debug, Default)]
pub struct HttpResult {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `None` while incomplete.
fn dechunk(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_line = String::from_utf8_lossy(rest.get(..line_end)?).to_string();
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Parses a whole HTTP/1.1 response read until the server closed the connection: the one
/// reader of responses for the Envoy clients here and the registry client of authz-oci.
pub fn parse_complete_response(data: &[u8], head_only: bool) -> Result<HttpResult, String> {
    match parse_response(data, true, head_only) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("incomplete response".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a response out of `data`; `Ok(None)` while incomplete (`eof`: no more will come).
fn parse_response(
    data: &[u8],
    eof: bool,
    head_only: bool,
) -> Result<Option<HttpResult>, ConnError> {
    let Some(head_end) = find(data, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(data.get(..head_end).unwrap_or_default()).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ConnError::Io(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut result = HttpResult {
        status,
        headers,
        body: Vec::new(),
    };
    let body = data.get(head_end + 4..).unwrap_or_default();
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(result));
    }
    if result
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(dechunk(body).map(|b| {
            result.body = b;
            result
        }));
    }
    if let Some(len) = result
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() >= len {
            result.body = body.get(..len).unwrap_or_default().to_vec();
            return Ok(Some(result));
        }
        return Ok(None);
    }
    if eof {
        result.body = body.to_vec();
        return Ok(Some(result));
    }
    Ok(None)
}

/// Sends one request on a new connection and reads the response.
pub fn http_request(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
    req: &HttpRequest,
) -> Result<HttpResult, ConnError> {
    http_request_after(source, dest, tls, &[], req)
}

/// A PROXY protocol version 1 header announcing `source` → `dest` (haproxy's
/// proxy-protocol.txt, section 2.1): `TCP4` or `TCP6` as the addresses are.
pub fn proxy_protocol_v1(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() && dest.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match (a.ip(), family) {
        (std::net::IpAddr::V4(v4), "TCP6") => v4.to_ipv6_mapped().to_string(),
        (ip, _) => ip.to_string(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        ip(source),
        ip(dest),
        source.port(),
        dest.port()
    )
    .into_bytes()
}

/// As [`http_request`], writing `preamble` (e.g. a PROXY protocol header) first, before
/// the TLS handshake if there is one (see [`open_after`]).
pub fn http_request_after(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    tls: Option<&TlsClient>,
    preamble: &[u8],
    req: &HttpRequest,
) -> Result<HttpResult, ConnError> {
    let mut conn = open_after(source, dest, tls, preamble)?;
    conn.write_all(&req.encode())
        .and_then(|_| conn.flush())
        .map_err(|e| classify(&e))?;
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(r) = parse_response(&data, false, head_only)? {
            conn.close();
            return Ok(r);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::Timeout(format!(
                "{} bytes of response",
                data.len()
            )));
        }
        conn.set_read_timeout(left);
        match conn.read(&mut buf) {
            Ok(0) => {
                return match parse_response(&data, true, head_only)? {
                    Some(r) => Ok(r),
                    None if data.is_empty() => {
                        Err(ConnError::Closed("EOF before any response".into()))
                    }
                    None => Err(ConnError::Closed(format!(
                        "EOF after {} bytes of response",
                        data.len()
                    ))),
                };
            }
            Ok(n) => data.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) => {
                // A close without close_notify after a complete, length-less response is fine.
                if let Some(r) = parse_response(&data, true, head_only)? {
                    if !data.is_empty() {
                        return Ok(r);
                    }
                }
                return Err(classify(&e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked() {
        let r = parse_response(
            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n\r\nRBAC: access denied",
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.body_text(), "RBAC: access denied");
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
            false,
            false
        )
        .unwrap()
        .is_none());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nLIVE\n", true, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"LIVE\n");
    }
}
