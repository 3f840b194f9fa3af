//! The browser sign-in of Sallyport's programs (`sallyport login`, `sallyport-review --gateway`), as
//! RFC 8252 describes for native apps: the program listens on a loopback port of its own, opens the
//! user's browser at the gateway's `/login/cli` with that port, a random `state` and the SHA-256 of a
//! random verifier, and the gateway, once the browser has signed in there (any way the login page
//! offers: a provider, a passkey, a password and its second factor), sends the browser back to
//! `http://127.0.0.1:PORT/callback` with a one-time code. The program then trades the code and the
//! verifier for its certificate or token over its pinned HTTPS connection; a code caught on the way is
//! worthless without the verifier, which never leaves the program.
//!
//! Blocking and std-only, so the async CLI (on a blocking thread) and the blocking reviewer share it.
//! Only one request is answered for the program: one with the wrong `state` is refused and waited past.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a program waits for the browser to come back (a person signing in, perhaps at a provider
/// with a second factor of its own).
pub const BROWSER_WAIT: Duration = Duration::from_secs(600);

/// What the gateway's sign-in gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The one-time code to trade.
    pub code: String,
    /// The verifier whose hash the gateway was given.
    pub verifier: String,
}

/// Why the browser sign-in did not end in a code.
#[derive(Debug)]
pub enum LoopbackError {
    /// The loopback port could not be used.
    Io(io::Error),
    /// Nobody came back within the time allowed.
    TimedOut(Duration),
    /// The gateway sent the browser back with a refusal, in its words.
    Refused(String),
}

impl std::fmt::Display for LoopbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoopbackError::Io(error) => write!(f, "the sign-in's loopback port failed: {error}"),
            LoopbackError::TimedOut(after) => write!(
                f,
                "the browser did not come back within {} seconds",
                after.as_secs()
            ),
            LoopbackError::Refused(why) => write!(f, "the gateway refused the sign-in: {why}"),
        }
    }
}

impl std::error::Error for LoopbackError {}

impl From<io::Error> for LoopbackError {
    fn from(error: io::Error) -> Self {
        LoopbackError::Io(error)
    }
}

/// Random bytes as hex; `None` without randomness.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| io::Error::other("no randomness"))?;
    Ok(hex::encode(bytes))
}

/// The challenge the gateway is given for `verifier`: its SHA-256, hex.
pub fn challenge_of(verifier: &str) -> String {
    hex::encode(Sha256::digest(verifier.as_bytes()))
}

/// A browser sign-in waiting for its callback.
#[derive(Debug)]
pub struct LoopbackSignIn {
    listener: TcpListener,
    state: String,
    verifier: String,
}

impl LoopbackSignIn {
    /// Listens on a free port of 127.0.0.1 (never another address: the code must not leave the machine).
    pub fn bind() -> io::Result<LoopbackSignIn> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        Ok(LoopbackSignIn {
            listener,
            state: random_hex()?,
            verifier: random_hex()?,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// The gateway page to open: `gateway` (its base URL) `/login/cli` with this sign-in's port, state
    /// and challenge, what it is for (`cli`, `review`) and, when given, the provider to sign in with.
    pub fn authorize_url(
        &self,
        gateway: &url::Url,
        purpose: &str,
        provider: Option<&str>,
    ) -> io::Result<url::Url> {
        let mut url = gateway
            .join("/login/cli")
            .map_err(|error| io::Error::other(error.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("port", &self.port()?.to_string())
                .append_pair("state", &self.state)
                .append_pair("challenge", &challenge_of(&self.verifier))
                .append_pair("purpose", purpose);
            if let Some(provider) = provider {
                query.append_pair("provider", provider);
            }
        }
        Ok(url)
    }

    /// Waits up to `timeout` for the browser to come back with this sign-in's state; answers it with a
    /// line saying where to go on, and returns the code with the verifier.
    pub fn wait(self, timeout: Duration) -> Result<Callback, LoopbackError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(outcome) = self.answer(stream) {
                        return outcome.map(|code| Callback {
                            code,
                            verifier: self.verifier.clone(),
                        });
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(LoopbackError::TimedOut(timeout));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Reads one request; `None` when it is not this sign-in's callback (answered 400 and ignored).
    fn answer(&self, stream: TcpStream) -> Option<Result<String, LoopbackError>> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut line = String::new();
        // One line of at most 8 KiB: the request line; the rest of the request is not needed.
        BufReader::new(stream.try_clone().ok()?)
            .take(8 * 1024)
            .read_line(&mut line)
            .ok()?;
        let target = line.split_whitespace().nth(1).unwrap_or_default();
        let params = url::Url::parse("http://127.0.0.1")
            .and_then(|base| base.join(target))
            .ok()
            .filter(|url| url.path() == "/callback");
        let param = |name: &str| {
            params.as_ref().and_then(|url| {
                url.query_pairs()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
            })
        };
        if param("state").as_deref() != Some(self.state.as_str()) {
            respond(
                stream,
                "400 Bad Request",
                "This is not the sign-in this program started.",
            );
            return None;
        }
        if let Some(error) = param("error") {
            respond(
                stream,
                "200 OK",
                &format!("Sallyport: the sign-in was refused: {error}"),
            );
            return Some(Err(LoopbackError::Refused(error)));
        }
        match param("code").filter(|code| !code.is_empty() && code.len() <= 128) {
            Some(code) => {
                respond(
                    stream,
                    "200 OK",
                    "Sallyport: signed in. You can close this tab and go back to your terminal.",
                );
                Some(Ok(code))
            }
            None => {
                respond(
                    stream,
                    "400 Bad Request",
                    "The sign-in came back without its code.",
                );
                None
            }
        }
    }
}

fn respond(mut stream: TcpStream, status: &str, text: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{text}\n",
        text.len() + 1
    );
    stream.write_all(answer.as_bytes()).ok();
}

/// Opens `url` in the user's browser: `$BROWSER` when set, else `xdg-open` where a desktop session
/// is (`DISPLAY` or `WAYLAND_DISPLAY`). An error means no browser could be opened, and the caller
/// falls back to a sign-in that needs none.
pub fn open_browser(url: &url::Url) -> io::Result<()> {
    let program = match std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        Some(browser) => browser,
        None if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            "xdg-open".into()
        }
        None => {
            return Err(io::Error::other(
                "no browser to open: no desktop session and no $BROWSER",
            ));
        }
    };
    let status = Command::new(&program)
        .arg(url.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} could not open the page ({status})",
            program.to_string_lossy()
        )))
    }
}

/// Opens `url` in the browser and tells the user on standard error, the page included (for when no
/// window appeared). Where no browser can be opened: with `must`, asks for the page to be opened by
/// hand; otherwise says the program signs in with a code instead and returns false. True means: wait
/// (up to [`BROWSER_WAIT`]).
pub fn offer(url: &url::Url, must: bool) -> bool {
    match open_browser(url) {
        Ok(()) => {
            eprintln!("Your browser was opened to sign in. If it did not open, open\n  {url}")
        }
        Err(_) if must => {
            eprintln!("Open this page in a browser on this computer to sign in:\n  {url}");
        }
        Err(error) => {
            eprintln!("No browser could be opened ({error}); signing in with a code instead.");
            return false;
        }
    }
    eprintln!(
        "Waiting for the browser (up to {} minutes) ...",
        BROWSER_WAIT.as_secs().div_ceil(60)
    );
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn get(port: u16, target: &str) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        write!(stream, "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        answer
    }

    #[test]
    fn the_callback_with_this_state_gives_the_code_and_others_are_refused() {
        let sign_in = LoopbackSignIn::bind().unwrap();
        let port = sign_in.port().unwrap();
        let gateway = url::Url::parse("https://gw.example:8443/").unwrap();
        let url = sign_in
            .authorize_url(&gateway, "cli", Some("Contoso"))
            .unwrap();
        assert_eq!(url.path(), "/login/cli");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["port"], port.to_string());
        assert_eq!(query["provider"], "Contoso");
        let state = query["state"].clone();
        let challenge = query["challenge"].clone();
        let client = std::thread::spawn(move || {
            let wrong = get(port, "/callback?state=other&code=stolen");
            let right = get(port, &format!("/callback?state={state}&code=c0de"));
            (wrong, right)
        });
        let callback = sign_in.wait(Duration::from_secs(10)).unwrap();
        let (wrong, right) = client.join().unwrap();
        assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
        assert!(
            right.starts_with("HTTP/1.1 200") && right.contains("signed in"),
            "{right}"
        );
        assert_eq!(callback.code, "c0de");
        assert_eq!(challenge_of(&callback.verifier), challenge);
    }

    #[test]
    fn a_refusal_and_silence_end_the_wait() {
        let sign_in = LoopbackSignIn::bind().unwrap();
        let port = sign_in.port().unwrap();
        let state = sign_in.state.clone();
        let client =
            std::thread::spawn(move || get(port, &format!("/callback?state={state}&error=denied")));
        assert!(matches!(
            sign_in.wait(Duration::from_secs(10)),
            Err(LoopbackError::Refused(why)) if why == "denied"
        ));
        client.join().unwrap();
        let silent = LoopbackSignIn::bind().unwrap();
        assert!(matches!(
            silent.wait(Duration::from_millis(200)),
            Err(LoopbackError::TimedOut(_))
        ));
    }
}
