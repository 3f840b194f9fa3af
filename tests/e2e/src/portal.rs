//! Portal steps shared by the end-to-end tests and the benchmarks: logging in over HTTPS and driving a
//! terminal WebSocket like the browser page does.

use std::time::{Duration, Instant};

use crate::{Client, Gateway};
use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The password tests set in place of the one-time admin password.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password-1";

/// Logs in as admin with the one-time password, replaces it as the portal demands, and returns a
/// client holding the session cookie.
pub async fn login_admin(gateway: &Gateway) -> Result<Client> {
    first_login(gateway, "admin", &gateway.password(), ADMIN_PASSWORD).await
}

/// Creates a portal user through the admin pages and returns the one-time password shown once.
pub async fn create_user(
    admin: &Client,
    username: &str,
    role: &str,
    groups: &str,
) -> Result<String> {
    let origin = admin.origin();
    let response = admin
        .post_form(
            "/admin/users",
            &[("username", username), ("role", role), ("groups", groups)],
            Some(&origin),
        )
        .await?;
    let page = response.text();
    if response.status != 200 {
        bail!(
            "creating {username} failed with {}: {page}",
            response.status
        );
    }
    let password = page
        .split(r#"<code id="one-time-password">"#)
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .with_context(|| format!("no one-time password on the page: {page}"))?;
    Ok(password.to_owned())
}

/// Logs a user in with their one-time password and sets `new_password`, returning their client.
pub async fn first_login(
    gateway: &Gateway,
    username: &str,
    one_time: &str,
    new_password: &str,
) -> Result<Client> {
    let client = gateway.client()?;
    let origin = client.origin();
    let response = client
        .post_form(
            "/login",
            &[("username", username), ("password", one_time)],
            Some(&origin),
        )
        .await?;
    if response.status != 303 || response.location() != Some("/password") {
        bail!(
            "first login of {username} should go to /password, got {} {:?}: {}",
            response.status,
            response.location(),
            response.text()
        );
    }
    let response = client
        .post_form(
            "/password",
            &[("new_password", new_password), ("repeat", new_password)],
            Some(&origin),
        )
        .await?;
    if response.status != 303 || response.location() != Some("/targets") {
        bail!(
            "password change of {username} should redirect to /targets, got {} {:?}: {}",
            response.status,
            response.location(),
            response.text()
        );
    }
    Ok(client)
}

/// The audit log's rows of `kind` (newest first), as the admin page shows them to `admin`.
pub async fn audit_rows(admin: &Client, kind: &str) -> Result<Vec<String>> {
    let page = admin.get("/admin/audit").await?.text();
    Ok(page
        .split("<tr")
        .filter(|row| row.contains(&format!(r#"data-kind="{kind}""#)))
        .map(str::to_owned)
        .collect())
}

/// Adds a policy through the admin pages.
pub async fn add_policy(admin: &Client, name: &str, subjects: &str, targets: &str) -> Result<()> {
    let origin = admin.origin();
    let response = admin
        .post_form(
            "/admin/policies",
            &[
                ("name", name),
                ("subjects", subjects),
                ("targets", targets),
                ("protocols", "ssh"),
            ],
            Some(&origin),
        )
        .await?;
    if response.status != 303 {
        bail!(
            "adding policy {name} failed: {} {}",
            response.status,
            response.text()
        );
    }
    Ok(())
}

/// The id of the target called `name`, read from the target list page.
pub async fn target_id(client: &Client, name: &str) -> Result<i64> {
    let page = client.get("/targets").await?.text();
    let marker = format!(r#"<tr data-target="{name}">"#);
    let row = page
        .split(&marker)
        .nth(1)
        .with_context(|| format!("target {name} is not listed:\n{page}"))?;
    let id = row
        .split("/connect/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no connect link")?;
    Ok(id.parse()?)
}

/// What a terminal session has received so far.
#[derive(Debug, Default)]
pub struct Received {
    /// Terminal output, lossily decoded.
    pub output: String,
    /// Control messages, in order.
    pub controls: Vec<Value>,
    /// The server ended the WebSocket with a close frame (not by dropping the connection).
    pub close_frame: bool,
}

impl Received {
    /// The first control message of type `kind`.
    pub fn control(&self, kind: &str) -> Option<&Value> {
        self.controls.iter().find(|c| c["type"] == kind)
    }
}

/// A terminal WebSocket session.
pub struct Terminal {
    ws: crate::http::Ws,
    /// Everything received.
    pub received: Received,
}

impl Terminal {
    /// Opens the WebSocket for `target_id` and sends the connect message with a password.
    pub async fn open(
        client: &Client,
        target_id: i64,
        username: &str,
        password: &str,
    ) -> Result<Terminal> {
        let connect = serde_json::json!({"type": "connect", "username": username, "password": password, "cols": 100, "rows": 30});
        Self::open_with(client, target_id, connect).await
    }

    /// Opens the WebSocket for `target_id` and sends the connect message with a private key.
    pub async fn open_with_key(
        client: &Client,
        target_id: i64,
        username: &str,
        pem: &str,
    ) -> Result<Terminal> {
        let connect = serde_json::json!({"type": "connect", "username": username, "private_key": pem, "cols": 100, "rows": 30});
        Self::open_with(client, target_id, connect).await
    }

    /// Opens the WebSocket for `target_id` and sends `connect` as the first message.
    pub async fn open_with(client: &Client, target_id: i64, connect: Value) -> Result<Terminal> {
        let ws = client
            .ws_connect_same_origin(&format!("/ws/terminal/{target_id}"))
            .await?;
        let mut terminal = Terminal {
            ws,
            received: Received::default(),
        };
        terminal
            .ws
            .send(Message::Text(connect.to_string().into()))
            .await?;
        Ok(terminal)
    }

    /// Sends keystrokes.
    pub async fn type_text(&mut self, text: &str) -> Result<()> {
        self.ws
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await?;
        Ok(())
    }

    /// Sends a resize.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        let msg = serde_json::json!({"type": "resize", "cols": cols, "rows": rows});
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        Ok(())
    }

    /// Reads until `done(received)` holds, the socket closes, or `timeout` passes. Returns whether
    /// `done` held.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Received) -> bool,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        while !done(&self.received) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Ok(false),
                Ok(None) => return Ok(done(&self.received)),
                Ok(Some(message)) => match message {
                    Ok(Message::Binary(bytes)) => self
                        .received
                        .output
                        .push_str(&String::from_utf8_lossy(&bytes)),
                    Ok(Message::Text(text)) => self
                        .received
                        .controls
                        .push(serde_json::from_str(text.as_str())?),
                    Ok(Message::Close(_)) => {
                        self.received.close_frame = true;
                        return Ok(done(&self.received));
                    }
                    Err(_) => return Ok(done(&self.received)),
                    Ok(_) => {}
                },
            }
        }
        Ok(true)
    }

    /// Reads output without keeping it until `marker` appears; returns how many bytes arrived. For bulk
    /// transfers, where keeping everything would measure the test instead of the gateway.
    pub async fn read_bulk_until(&mut self, marker: &str, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => {
                    bail!("{marker:?} did not arrive within {timeout:?} ({total} bytes read)")
                }
                Ok(None) => bail!("the session closed before {marker:?} arrived"),
                Ok(Some(message)) => message?,
            };
            match message {
                Message::Binary(bytes) => {
                    total += bytes.len() as u64;
                    tail.extend_from_slice(&bytes);
                    if tail.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                        return Ok(total);
                    }
                    let keep = marker.len().min(tail.len());
                    tail.drain(..tail.len() - keep);
                }
                Message::Text(text) => self
                    .received
                    .controls
                    .push(serde_json::from_str(text.as_str())?),
                Message::Close(_) => bail!("the session closed before {marker:?} arrived"),
                _ => {}
            }
        }
    }

    /// Waits for the next output message and returns its bytes.
    pub async fn next_output(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        loop {
            match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => bail!("no output within {timeout:?}"),
                Ok(None) => bail!("the session closed"),
                Ok(Some(message)) => match message? {
                    Message::Binary(bytes) => return Ok(bytes.to_vec()),
                    Message::Text(text) => self
                        .received
                        .controls
                        .push(serde_json::from_str(text.as_str())?),
                    Message::Close(_) => bail!("the session closed"),
                    _ => {}
                },
            }
        }
    }

    /// Waits for the `connected` control message, failing with what arrived instead.
    pub async fn expect_connected(&mut self) -> Result<()> {
        let ok = self
            .read_until(Duration::from_secs(20), |r| {
                r.control("connected").is_some() || r.control("error").is_some()
            })
            .await?;
        match self.received.control("connected") {
            Some(_) if ok => Ok(()),
            _ => bail!("session did not connect: {:?}", self.received.controls),
        }
    }

    /// Waits for an `error` control message and returns its kind and message.
    pub async fn expect_error(&mut self) -> Result<(String, String)> {
        self.read_until(Duration::from_secs(30), |r| r.control("error").is_some())
            .await?;
        let error = self
            .received
            .control("error")
            .with_context(|| format!("no error arrived: {:?}", self.received.controls))?;
        Ok((
            error["kind"].as_str().unwrap_or("").to_owned(),
            error["message"].as_str().unwrap_or("").to_owned(),
        ))
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most `timeout`) until the recordings hold a sealed session that `wanted` picks, and returns it.
pub async fn sealed_session(
    store: &sallyport_recordings::Store,
    timeout: Duration,
    wanted: impl Fn(&sallyport_recordings::SessionRow) -> bool,
) -> Result<sallyport_recordings::SessionRow> {
    eventually(timeout, "the session to be sealed", || {
        store
            .sessions()
            .ok()?
            .into_iter()
            .find(|s| s.sealed && wanted(s))
    })
    .await
}

/// The gateway's recording verification key (hex file written beside the signing key).
pub fn verifying_key(gateway: &Gateway) -> Result<ed25519_dalek::VerifyingKey> {
    let hex_text = std::fs::read_to_string(gateway.state_dir().join("recording-signing.pub"))?;
    let bytes: [u8; 32] = hex::decode(hex_text.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("public key is not 32 bytes"))?;
    Ok(ed25519_dalek::VerifyingKey::from_bytes(&bytes)?)
}

/// A desktop WebSocket session driven from Rust as the browser page drives it: the connect message, then
/// display updates applied to a framebuffer of our own (solid and PNG rectangles), and input events.
pub struct Desktop {
    ws: crate::http::Ws,
    /// The desktop's size as the last update gave it.
    pub size: (u16, u16),
    /// Tightly packed RGBA of the desktop as the updates drew it.
    pub rgba: Vec<u8>,
    /// Control messages, in order.
    pub controls: Vec<Value>,
    /// How many display updates arrived.
    pub updates: u64,
}

impl Desktop {
    /// Opens `/ws/desktop/{target_id}` and sends the connect message with a password and a size.
    pub async fn open(
        client: &Client,
        target_id: i64,
        username: &str,
        password: &str,
        size: (u16, u16),
    ) -> Result<Desktop> {
        let mut ws = client
            .ws_connect_same_origin(&format!("/ws/desktop/{target_id}"))
            .await?;
        let connect = serde_json::json!({"type": "connect", "username": username, "password": password,
            "width": size.0, "height": size.1});
        ws.send(Message::Text(connect.to_string().into())).await?;
        Ok(Desktop {
            ws,
            size: (0, 0),
            rgba: Vec::new(),
            controls: Vec::new(),
            updates: 0,
        })
    }

    /// The RGB of one desktop pixel, once an update covered it.
    pub fn pixel(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        if x >= self.size.0 || y >= self.size.1 {
            return None;
        }
        let i = (usize::from(y) * usize::from(self.size.0) + usize::from(x)) * 4;
        self.rgba.get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }

    /// Sends a control message (JSON), as the page does for its clipboard panel.
    pub async fn send_control(&mut self, control: &Value) -> Result<()> {
        self.ws
            .send(Message::Text(control.to_string().into()))
            .await?;
        Ok(())
    }

    /// Sends a batch of input events.
    pub async fn input(&mut self, events: &[sallyport_core::display::InputEvent]) -> Result<()> {
        let bytes = sallyport_core::display::encode_input(events);
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    fn apply(&mut self, bytes: &[u8]) -> Result<()> {
        use sallyport_core::display::{Encoding, parse_update};
        let update = parse_update(bytes)?;
        if (update.width, update.height) != self.size {
            self.size = (update.width, update.height);
            self.rgba = vec![0; usize::from(update.width) * usize::from(update.height) * 4];
        }
        let stride = usize::from(self.size.0) * 4;
        for r in update.rects {
            let (w, h) = (usize::from(r.rect.width), usize::from(r.rect.height));
            let pixels = match r.encoding {
                Encoding::Solid => r.data.repeat(w * h),
                Encoding::Png => {
                    let mut reader =
                        png::Decoder::new(std::io::Cursor::new(&r.data)).read_info()?;
                    let mut buf = vec![0; reader.output_buffer_size().context("png size")?];
                    let info = reader.next_frame(&mut buf)?;
                    if info.color_type != png::ColorType::Rgba || info.width as usize != w {
                        bail!("a PNG rectangle is not {w} pixels of RGBA: {info:?}");
                    }
                    buf.truncate(w * h * 4);
                    buf
                }
                Encoding::Jpeg => {
                    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(&r.data));
                    let rgb = decoder.decode()?;
                    let info = decoder.info().context("jpeg info")?;
                    if info.pixel_format != jpeg_decoder::PixelFormat::RGB24
                        || usize::from(info.width) != w
                        || usize::from(info.height) != h
                    {
                        bail!("a JPEG rectangle is not {w}x{h} RGB: {info:?}");
                    }
                    rgb.chunks_exact(3)
                        .flat_map(|p| [p[0], p[1], p[2], 0xff])
                        .collect()
                }
            };
            for row in 0..h {
                let at = (usize::from(r.rect.y) + row) * stride + usize::from(r.rect.x) * 4;
                if let (Some(dst), Some(src)) = (
                    self.rgba.get_mut(at..at + w * 4),
                    pixels.get(row * w * 4..(row + 1) * w * 4),
                ) {
                    dst.copy_from_slice(src);
                }
            }
        }
        self.updates += 1;
        Ok(())
    }

    /// Applies updates until `done(self)` holds; fails on an `error` message, a closed socket or after `timeout`.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Desktop) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => bail!(
                    "timed out waiting for {what} ({} updates; controls {:?})",
                    self.updates,
                    self.controls
                ),
                Ok(None) => bail!("the desktop closed while waiting for {what}"),
                Ok(Some(message)) => message?,
            };
            match message {
                Message::Binary(bytes) => self.apply(&bytes)?,
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str())?;
                    if value["type"] == "error" {
                        bail!("the desktop failed while waiting for {what}: {value}");
                    }
                    self.controls.push(value);
                }
                Message::Close(frame) => {
                    bail!("the desktop closed while waiting for {what}: {frame:?}")
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Keeps applying updates for `period` (the session stays busy being watched).
    pub async fn watch_for(&mut self, period: Duration) -> Result<()> {
        let until = Instant::now() + period;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Ok(()),
                Ok(None) => bail!("the desktop closed while being watched"),
                Ok(Some(message)) => match message? {
                    Message::Binary(bytes) => self.apply(&bytes)?,
                    Message::Text(text) => self.controls.push(serde_json::from_str(text.as_str())?),
                    Message::Close(frame) => {
                        bail!("the desktop closed while being watched: {frame:?}")
                    }
                    _ => {}
                },
            }
        }
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
