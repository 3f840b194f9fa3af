//! A small HTTPS client for tests: HTTP/1.1 over tokio-rustls, one connection per request
//! (`Connection: close`), certificate pinned by the SHA-256 of the server's DER certificate, a
//! cookie jar, and WebSocket connections (tokio-tungstenite over the same kind of TLS stream).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sallyport_tls_pin::Sha256Fingerprint;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The TLS stream the client speaks over.
pub type Tls = TlsStream<TcpStream>;
/// A WebSocket over the client's TLS stream.
pub type Ws = WebSocketStream<Tls>;

/// Normalizes a SHA-256 fingerprint ("AB:CD:..." or "abcd...") to 64 lowercase hex digits.
pub fn normalize_fingerprint(fp: &str) -> Result<String> {
    let packed: String = fp.chars().filter(|c| !c.is_whitespace()).collect();
    Sha256Fingerprint::parse(&packed)
        .map(|parsed| parsed.hex())
        .with_context(|| format!("not a SHA-256 fingerprint: {fp:?}"))
}

/// SHA-256 of a DER certificate as 64 lowercase hex digits.
pub fn der_fingerprint(der: &[u8]) -> String {
    Sha256Fingerprint::of(der).hex()
}

/// A rustls client configuration (ring, HTTP/1.1) that accepts exactly the certificate whose SHA-256
/// is `pin` (hex, with or without colons), or any certificate without a pin. For tests that need their
/// own sockets (a chosen source address, a half-finished request).
pub fn pinned_client_config(pin: Option<&str>) -> Result<Arc<ClientConfig>> {
    let pin = pin
        .map(|pin| {
            sallyport_tls_pin::normalize(pin)
                .with_context(|| format!("not a SHA-256 fingerprint: {pin:?}"))
        })
        .transpose()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = sallyport_tls_pin::PinVerifier::new(pin, provider.clone());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens connections to the gateway on 127.0.0.1 from a chosen loopback source address (to act as
/// many clients), with TLS pinned to the gateway's certificate.
#[derive(Clone)]
pub struct SourceDialer {
    port: u16,
    config: Arc<ClientConfig>,
}

impl SourceDialer {
    /// The gateway's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A dialer for `gateway`.
    pub fn new(gateway: &crate::Gateway) -> Result<SourceDialer> {
        let fingerprint = gateway.fingerprint().context("no fingerprint printed")?;
        let config = pinned_client_config(Some(&fingerprint))?;
        Ok(SourceDialer {
            port: gateway.port(),
            config,
        })
    }

    /// The name TLS connections present (the gateway's loopback address).
    pub fn server_name() -> ServerName<'static> {
        ServerName::IpAddress(Ipv4Addr::LOCALHOST.into())
    }

    /// A TCP connection from `source`.
    pub async fn tcp(&self, source: Ipv4Addr) -> Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
            .await
            .with_context(|| format!("connect from {source}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// A TLS connection from `source` (20 s handshake deadline).
    pub async fn tls(&self, source: Ipv4Addr) -> Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(source).await?;
        let connect = TlsConnector::from(self.config.clone()).connect(Self::server_name(), tcp);
        tokio::time::timeout(Duration::from_secs(20), connect)
            .await
            .with_context(|| format!("TLS handshake from {source} timed out"))?
            .with_context(|| format!("TLS handshake from {source}"))
    }

    /// The bytes of a real ClientHello for this gateway.
    pub fn client_hello(&self) -> Result<Vec<u8>> {
        let mut connection =
            rustls::ClientConnection::new(self.config.clone(), Self::server_name())?;
        let mut hello = Vec::new();
        connection.write_tls(&mut hello)?;
        Ok(hello)
    }
}

/// A response: status, headers (names lowercased, in order) and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header name (lowercase) and value pairs, in the order received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked transfer coding removed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), e.g. every `Set-Cookie`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Location` header of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
}

/// Why a WebSocket connection could not be opened.
#[derive(Debug)]
pub enum HandshakeError {
    /// The server answered the upgrade request with a non-101 HTTP response.
    Refused {
        /// The HTTP status of that response.
        status: u16,
        /// Its body, if any.
        body: String,
    },
    /// TCP, TLS, protocol errors and timeouts.
    Other(anyhow::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Refused { status, body } => {
                write!(f, "websocket handshake refused with HTTP {status}: {body}")
            }
            HandshakeError::Other(e) => write!(f, "websocket handshake failed: {e:#}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl HandshakeError {
    /// The HTTP status of a refused handshake.
    pub fn status(&self) -> Option<u16> {
        match self {
            HandshakeError::Refused { status, .. } => Some(*status),
            HandshakeError::Other(_) => None,
        }
    }
}

/// HTTPS client for one origin with a shared cookie jar (clones share the jar).
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
    timeout: Duration,
    /// Connections are made inside this network namespace instead of the test's own.
    dialer: Option<Arc<crate::tunnel::NsSockets>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("origin", &self.origin())
            .field("cookies", &self.cookies())
            .finish()
    }
}

impl Client {
    /// A client for `base_url` (`https://host:port/...`; only scheme, host and port are used).
    /// With `pin` (SHA-256 of the DER certificate, hex with or without colons) only that
    /// certificate is accepted; without it, any certificate is.
    pub fn new(base_url: &str, pin: Option<&str>) -> Result<Client> {
        let rest = base_url
            .strip_prefix("https://")
            .with_context(|| format!("not an https URL: {base_url}"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once("]:").context("IPv6 URL without port")?;
            (h.to_owned(), p)
        } else {
            let (h, p) = authority
                .rsplit_once(':')
                .with_context(|| format!("URL without port: {base_url}"))?;
            (h.to_owned(), p)
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in {base_url}"))?;
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())?,
        };
        Ok(Client {
            host,
            port,
            server_name,
            connector: TlsConnector::from(pinned_client_config(pin)?),
            jar: Arc::new(Mutex::new(BTreeMap::new())),
            timeout: Duration::from_secs(30),
            dialer: None,
        })
    }

    /// Makes every connection from inside the namespace `sockets` lives in (a client elsewhere in the
    /// network); the cookie jar stays shared with clones.
    pub fn dial_from(mut self, sockets: Arc<crate::tunnel::NsSockets>) -> Client {
        self.dialer = Some(sockets);
        self
    }

    async fn connect_tcp(&self) -> Result<TcpStream> {
        let Some(sockets) = self.dialer.clone() else {
            return TcpStream::connect((self.host.as_str(), self.port))
                .await
                .with_context(|| format!("connect {}:{}", self.host, self.port));
        };
        let ip: IpAddr = self.host.parse().with_context(|| {
            format!(
                "dialing from a namespace needs an IP literal, not {}",
                self.host
            )
        })?;
        let address = SocketAddr::new(ip, self.port);
        let stream = tokio::task::spawn_blocking(move || sockets.connect(address)).await??;
        stream.set_nonblocking(true)?;
        Ok(TcpStream::from_std(stream)?)
    }

    /// Sets the time limit of each request (30 s unless changed).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// `https://host:port` — the value browsers send as `Origin`.
    pub fn origin(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }

    fn host_header(&self) -> String {
        self.origin().trim_start_matches("https://").to_owned()
    }

    /// Opens a TCP connection and completes the TLS handshake (pin checked).
    pub async fn connect_tls(&self) -> Result<Tls> {
        let fut = async {
            let tcp = self.connect_tcp().await?;
            tcp.set_nodelay(true)?;
            let tls = self
                .connector
                .connect(self.server_name.clone(), tcp)
                .await
                .context("TLS handshake")?;
            Ok::<_, anyhow::Error>(tls)
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| anyhow!("TLS connect timed out after {:?}", self.timeout))?
    }

    /// SHA-256 (lowercase hex) of the certificate the server presents.
    pub async fn server_fingerprint(&self) -> Result<String> {
        let tls = self.connect_tls().await?;
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .context("server sent no certificate")?;
        let first = certs.first().context("empty certificate chain")?;
        Ok(der_fingerprint(first))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response> {
        self.request("GET", path, &[], None).await
    }

    /// `POST path` with an `application/x-www-form-urlencoded` body and optional `Origin`.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Result<Response> {
        let body = form_encode(form);
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        self.request("POST", path, &headers, Some(body.as_bytes()))
            .await
    }

    /// POSTs `body` as `application/json`, with `origin` as the Origin header when given (a page's
    /// script sends one; a program does not).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        origin: Option<&str>,
    ) -> Result<Response> {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        self.request("POST", path, &headers, Some(body.to_string().as_bytes()))
            .await
    }

    /// Any request. `Host`, `Connection: close`, `Content-Length` and (unless given in `headers`)
    /// `Cookie` from the jar are added; `Set-Cookie` of the response updates the jar.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response> {
        if !path.starts_with('/') {
            bail!("request path must start with '/': {path:?}");
        }
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: sallyport-e2e\r\nAccept: */*\r\n",
            self.host_header()
        );
        let has_cookie = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("cookie"));
        if !has_cookie && let Some(cookie) = self.cookie_header() {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let is_head = method.eq_ignore_ascii_case("HEAD");

        let fut = async {
            let mut tls = self.connect_tls().await?;
            tls.write_all(head.as_bytes()).await?;
            if let Some(body) = body {
                tls.write_all(body).await?;
            }
            tls.flush().await?;
            read_response(&mut tls, is_head).await
        };
        let resp = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| anyhow!("{method} {path} timed out after {:?}", self.timeout))?
            .with_context(|| format!("{method} {path}"))?;
        for value in resp.header_all("set-cookie") {
            self.store_cookie(value);
        }
        Ok(resp)
    }

    fn store_cookie(&self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let expired = parts.any(|attr| {
            let attr = attr.trim().to_ascii_lowercase();
            attr.strip_prefix("max-age=")
                .is_some_and(|v| v.trim().parse::<i64>().map(|n| n <= 0).unwrap_or(false))
                || (attr.starts_with("expires=") && attr.contains("1970"))
        });
        let mut jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        if expired {
            jar.remove(name.trim());
        } else {
            jar.insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }

    /// The value of cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.get(name).cloned()
    }

    /// All cookies in the jar.
    pub fn cookies(&self) -> BTreeMap<String, String> {
        self.jar.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a cookie into the jar (or replaces it).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.insert(name.to_owned(), value.to_owned());
    }

    /// Empties the jar.
    pub fn clear_cookies(&self) {
        self.jar.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The `Cookie` header value the jar would send (`a=1; b=2`), if it holds any cookie.
    pub fn cookie_header(&self) -> Option<String> {
        let jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        if jar.is_empty() {
            return None;
        }
        Some(
            jar.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// Opens a WebSocket at `path` (`wss://host:port/path`) with the given `Cookie` and `Origin`
    /// headers. A non-101 answer comes back as [`HandshakeError::Refused`] with its status.
    pub async fn ws_connect(
        &self,
        path: &str,
        cookie_header: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, HandshakeError> {
        let url = format!("wss://{}{path}", self.host_header());
        let mut req = url
            .into_client_request()
            .map_err(|e| HandshakeError::Other(e.into()))?;
        let headers = req.headers_mut();
        if let Some(cookie) = cookie_header {
            let v = HeaderValue::from_str(cookie).map_err(|e| HandshakeError::Other(e.into()))?;
            headers.insert("cookie", v);
        }
        if let Some(origin) = origin {
            let v = HeaderValue::from_str(origin).map_err(|e| HandshakeError::Other(e.into()))?;
            headers.insert("origin", v);
        }
        let tls = self.connect_tls().await.map_err(HandshakeError::Other)?;
        match tokio::time::timeout(self.timeout, tokio_tungstenite::client_async(req, tls)).await {
            Ok(Ok((ws, _response))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(resp))) => Err(HandshakeError::Refused {
                status: resp.status().as_u16(),
                body: resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Ok(Err(e)) => Err(HandshakeError::Other(e.into())),
            Err(_) => Err(HandshakeError::Other(anyhow!(
                "websocket handshake timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// [`Self::ws_connect`] with the jar's cookies and this client's own origin.
    pub async fn ws_connect_same_origin(&self, path: &str) -> Result<Ws, HandshakeError> {
        let cookie = self.cookie_header();
        let origin = self.origin();
        self.ws_connect(path, cookie.as_deref(), Some(&origin))
            .await
    }
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// Reads more bytes into `buf`; false at end of stream (a TLS close without close_notify counts
/// as the end too).
async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_response<S: AsyncRead + Unpin>(s: &mut S, head_only: bool) -> Result<Response> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if !read_more(s, &mut buf).await? {
            bail!(
                "connection closed before the response head was complete ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            );
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut rest = buf.split_off(head_end + 4);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            if let Some(body) = decode_chunked(&rest)? {
                resp.body = body;
                return Ok(resp);
            }
            if !read_more(s, &mut rest).await? {
                bail!("connection closed inside a chunked body");
            }
        }
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        while rest.len() < len {
            if !read_more(s, &mut rest).await? {
                bail!("connection closed after {} of {len} body bytes", rest.len());
            }
        }
        rest.truncate(len);
        resp.body = rest;
        return Ok(resp);
    }
    while read_more(s, &mut rest).await? {}
    resp.body = rest;
    Ok(resp)
}

/// Decodes a complete chunked body; `None` while more input is needed.
fn decode_chunked(data: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + line_end]);
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        pos += line_end + 2;
        if size == 0 {
            // Optional trailers, then an empty line.
            let tail = &data[pos..];
            if tail.starts_with(b"\r\n") || find(tail, b"\r\n\r\n").is_some() {
                return Ok(Some(body));
            }
            return Ok(None);
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// Reads one whole HTTP/1.1 response (with Content-Length) from a raw stream and returns its head, as sent
/// (status line included), and its body: for tests that speak HTTP by hand on streams of their own, where
/// [`Client`] would hide what they look at. A response without Content-Length is an error here.
pub async fn read_head_and_body<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .context("response without Content-Length")?;
            if data.len() >= end + 4 + length {
                return Ok((head, data[end + 4..end + 4 + length].to_vec()));
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed inside a response");
        }
        data.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() -> Result<()> {
        assert_eq!(decode_chunked(b"5\r\nhello\r\n")?, None);
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")?,
            Some(b"hello world".to_vec())
        );
        Ok(())
    }

    #[test]
    fn forms_and_fingerprints_encode() -> Result<()> {
        assert_eq!(form_encode(&[("a b", "x&y=z/é")]), "a+b=x%26y%3Dz%2F%C3%A9");
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&fp)?, "ab".repeat(32));
        assert!(normalize_fingerprint("abc").is_err());
        Ok(())
    }

    #[test]
    fn cookie_jar_stores_and_expires() -> Result<()> {
        let c = Client::new("https://127.0.0.1:1/", None)?;
        c.store_cookie("__Host-sp=abc; Path=/; Secure; HttpOnly; SameSite=Strict");
        c.store_cookie("other=1");
        assert_eq!(c.cookie("__Host-sp").as_deref(), Some("abc"));
        assert_eq!(c.cookie_header().as_deref(), Some("__Host-sp=abc; other=1"));
        c.store_cookie("other=; Max-Age=0");
        assert_eq!(c.cookie("other"), None);
        Ok(())
    }
}
