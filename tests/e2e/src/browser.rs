//! Headless Debian Chromium driven through chromedriver and fantoccini (WebDriver).
//!
//! [`Browser::start`] makes a loopback-only network namespace and runs `/usr/bin/chromedriver`
//! (and so Chromium) inside it, so that the veths other tests create never reach Chromium's
//! network change detection (which aborts loads with `ERR_NETWORK_CHANGED`). Chromium reaches
//! the gateway at `https://127.0.0.1:<port>/` through an HTTP `CONNECT` proxy that only tunnels
//! to loopback ports of the root namespace; the WebDriver client reaches chromedriver through a
//! forwarded loopback port (see [`crate::tunnel`]). Each session gets a fresh profile directory;
//! certificate errors are ignored (the gateway's certificate is self-signed) and `__Host-`
//! Secure cookies set over such origins are kept (checked by the harness self-test). Drop kills
//! chromedriver and every browser process it started, by PID and process group, then deletes
//! the namespace.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::ClientBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tempfile::TempDir;

use crate::common::{descendants, require_root, require_tool, signal_pid, tail};
use crate::netns::LoopbackNs;
use crate::tunnel::{Acceptor, NsSockets, spawn_connect_proxy, spawn_forward};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// chromedriver's port inside the browser namespace (which holds nothing else).
const DRIVER_PORT: u16 = 9515;
/// The CONNECT proxy's port inside the browser namespace.
const PROXY_PORT: u16 = 3128;

/// A chromedriver process with one open browser session, in its own network namespace.
#[derive(Debug)]
pub struct Browser {
    client: Option<fantoccini::Client>,
    driver: Option<Child>,
    acceptors: Vec<Acceptor>,
    // Field order is drop order: the socket thread leaves the namespace before it is deleted.
    sockets: Arc<NsSockets>,
    ns: LoopbackNs,
    dir: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (bounded: 10 s for the driver, 60 s
    /// for the browser).
    pub async fn start() -> Result<Browser> {
        require_root()?;
        require_tool(CHROMEDRIVER)?;
        require_tool(CHROMIUM)?;
        let dir = tempfile::Builder::new()
            .prefix("spe2e-browser-")
            .tempdir()
            .context("browser tempdir")?;
        let profile = dir.path().join("profile");
        fs::create_dir(&profile)?;
        let ns = LoopbackNs::create("browser")?;
        let sockets = Arc::new(NsSockets::enter(ns.name())?);
        let proxy = spawn_connect_proxy(&sockets, PROXY_PORT)?;
        let forward = spawn_forward(sockets.clone(), DRIVER_PORT)?;
        let log = File::create(dir.path().join("chromedriver.log"))?;
        let driver = ns
            .exec(CHROMEDRIVER)
            .arg(format!("--port={DRIVER_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .context("spawn chromedriver")?;
        let driver_url = format!("http://127.0.0.1:{}", forward.port());
        let mut browser = Browser {
            client: None,
            driver: Some(driver),
            acceptors: vec![proxy, forward],
            sockets,
            ns,
            dir,
        };

        let inside = SocketAddr::from((Ipv4Addr::LOCALHOST, DRIVER_PORT));
        let deadline = Instant::now() + Duration::from_secs(10);
        while browser.sockets.connect(inside).is_err() {
            if let Some(driver) = browser.driver.as_mut()
                && let Some(status) = driver.try_wait()?
            {
                bail!("chromedriver exited ({status}): {}", browser.driver_log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "chromedriver did not listen on {inside} in {} within 10 s: {}",
                    browser.ns.name(),
                    browser.driver_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--disable-crash-reporter".to_owned(),
            "--disable-breakpad".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            format!("--proxy-server=http://127.0.0.1:{PROXY_PORT}"),
            // Loopback bypasses proxies unless this removes the implicit rule.
            "--proxy-bypass-list=<-loopback>".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1200,800".to_owned(),
        ];
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else {
            bail!("capabilities are not an object");
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let connect = builder.connect(&driver_url);
        let client = match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "chromedriver could not start chromium: {e}\n{}",
                browser.driver_log()
            ),
            Err(_) => bail!("no browser session within 60 s\n{}", browser.driver_log()),
        };
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver client.
    pub fn client(&self) -> &fantoccini::Client {
        // `client` is set for the whole life of a Browser handed out by `start`.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// Saves a PNG screenshot of the current page.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.client().screenshot().await.context("screenshot")?;
        fs::write(path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }

    /// Ends a scenario driven in this browser: when `result` is an error, saves a screenshot as
    /// `DIR/NAME-failure.png`, prints where, followed by what else explains the failure (`details`, asked for only
    /// then: the gateway's stderr, a server's log), and returns the error; otherwise closes the browser and
    /// returns the scenario's value.
    pub async fn finish<T>(
        self,
        result: Result<T>,
        dir: &Path,
        name: &str,
        details: impl FnOnce() -> String,
    ) -> Result<T> {
        if result.is_err() {
            let shot = dir.join(format!("{name}-failure.png"));
            let _ = self.screenshot(&shot).await;
            eprintln!("screenshot: {}\n{}", shot.display(), details());
        }
        let value = result?;
        self.close().await?;
        Ok(value)
    }

    /// Ends the session cleanly (bounded: 10 s) and then stops chromedriver.
    pub async fn close(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            tokio::time::timeout(Duration::from_secs(10), client.close())
                .await
                .context("closing the browser session timed out")?
                .context("close the browser session")?;
        }
        self.kill_all();
        Ok(())
    }

    /// chromedriver's log so far (the tail).
    pub fn driver_log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        tail(&text, 4000).to_owned()
    }

    /// The network namespace the browser runs in.
    pub fn netns(&self) -> &str {
        self.ns.name()
    }

    /// PIDs of chromedriver's descendants (the browser processes).
    pub fn browser_pids(&self) -> Vec<u32> {
        self.driver
            .as_ref()
            .map(|d| descendants(d.id()))
            .unwrap_or_default()
    }

    fn kill_all(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let pid = driver.id();
            for child in descendants(pid) {
                let _ = signal_pid(child, "KILL");
            }
            let _ = driver.kill();
            let _ = driver.wait();
            // Whatever double-forked away from chromedriver still sits in its process group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        for acceptor in &mut self.acceptors {
            acceptor.stop();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Dropping the fantoccini client asks chromedriver to end the session if a runtime is
        // still there; the kill below does not depend on it.
        self.client.take();
        self.kill_all();
    }
}

/// Steps of a person at the page, shared by the browser tests.
pub mod steps {
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use fantoccini::{Client, Locator};

    /// Waits up to 10 s for `css`.
    async fn element(driver: &Client, css: &str) -> Result<fantoccini::elements::Element> {
        driver
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no {css} on the page"))
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn fill(driver: &Client, css: &str, text: &str) -> Result<()> {
        let field = element(driver, css).await?;
        field.clear().await.ok();
        field
            .send_keys(text)
            .await
            .with_context(|| format!("typing into {css}"))
    }

    /// Clicks `css`.
    pub async fn click(driver: &Client, css: &str) -> Result<()> {
        element(driver, css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))
    }

    /// The text of `css`, waiting up to 10 s for it to exist. A page that is being replaced (the element
    /// went stale between finding and reading it) is waited out rather than reported.
    pub async fn text(driver: &Client, css: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = async { driver.find(Locator::Css(css)).await?.text().await };
            match attempt.await {
                Ok(text) => return Ok(text),
                Err(error) if Instant::now() > deadline => {
                    return Err(error).with_context(|| format!("reading {css}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The current value of the form field `css` (what is in the box, not its `value` attribute).
    pub async fn value(driver: &Client, css: &str) -> Result<String> {
        let value = element(driver, css)
            .await?
            .prop("value")
            .await
            .with_context(|| format!("reading the value of {css}"))?;
        Ok(value.unwrap_or_default())
    }

    /// The path of the page the browser is on.
    pub async fn path(driver: &Client) -> Result<String> {
        Ok(driver.current_url().await?.path().to_owned())
    }

    /// Waits up to 10 s until the browser is on the page `wanted` (a path).
    pub async fn wait_path(driver: &Client, wanted: &str) -> Result<()> {
        for _ in 0..100 {
            if path(driver).await? == wanted {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the browser is on {} instead of {wanted}",
            path(driver).await?
        )
    }

    /// Logs out with the header's button and waits for the login page.
    pub async fn logout(driver: &Client) -> Result<()> {
        click(driver, "#logout").await?;
        wait_path(driver, "/login").await
    }

    /// Logs in at the portal `base` (no trailing slash) with a password; where it lands is the caller's
    /// to check.
    pub async fn password_login(
        driver: &Client,
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        driver.goto(&format!("{base}/login")).await?;
        fill(driver, "#username", username).await?;
        fill(driver, "#password", password).await?;
        click(driver, "#login").await
    }

    /// The admin's first login at the portal `url`: the one-time password, replaced by `new_password`.
    /// Returns once the target list (where the password form leads) is shown, so that the form's
    /// redirect cannot overtake the next navigation (seen in a loaded CI run).
    pub async fn first_admin_login(
        driver: &Client,
        url: &str,
        one_time: &str,
        new_password: &str,
    ) -> Result<()> {
        driver.goto(url).await?;
        fill(driver, "#username", "admin").await?;
        fill(driver, "#password", one_time).await?;
        click(driver, "#login").await?;
        fill(driver, "#new_password", new_password).await?;
        fill(driver, "#repeat", new_password).await?;
        click(driver, "#save-password").await?;
        wait_text(driver, "h1", Duration::from_secs(20), |t| t == "Targets").await?;
        Ok(())
    }

    /// Saves an SSH target on the admin's targets page of the portal at `base` (no trailing slash),
    /// with its tags (comma-separated), and waits for it in the list.
    pub async fn save_target(
        driver: &Client,
        base: &str,
        name: &str,
        address: &str,
        tags: &str,
    ) -> Result<()> {
        driver.goto(&format!("{base}/admin/targets")).await?;
        fill(driver, "#target-name", name).await?;
        fill(driver, "#target-address", address).await?;
        fill(driver, "#target-tags", tags).await?;
        click(driver, "#save-target").await?;
        wait_text(driver, "#targets", Duration::from_secs(10), |t| {
            t.contains(name)
        })
        .await?;
        Ok(())
    }

    /// The text of `css` now, or empty when it is not on the page.
    async fn text_now(driver: &Client, css: &str) -> String {
        match driver.find(Locator::Css(css)).await {
            Ok(found) => found.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the text of `css` satisfies `check` and returns it; the failure names what the page
    /// showed, including its `#status` line.
    pub async fn wait_text(
        driver: &Client,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = text_now(driver, css).await;
            if check(&shown) {
                return Ok(shown);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting on {css}; it shows {shown:?}; status: {:?}",
                    text_now(driver, "#status").await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
