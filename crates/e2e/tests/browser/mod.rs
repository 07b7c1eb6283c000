//! A real headless Chromium, driven through Debian's chromedriver over the W3C WebDriver
//! protocol (JSON over HTTP on 127.0.0.1): what the admin pages' tests use to log in,
//! read, click, download and take screenshots as an operator's browser would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(30);

/// chromedriver, killed when dropped (also when starting the session fails).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    driver: Driver,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    /// Where downloads land.
    pub downloads: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request to chromedriver; its JSON answer.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver says `Connection: close` but keeps the connection open: the answer is
    // read by its Content-Length.
    let mut resp = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut read = |resp: &mut Vec<u8>| -> Result<(), String> {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!("{method} {path}: closed before the whole answer"));
        }
        resp.extend_from_slice(&buf[..n]);
        Ok(())
    };
    let (head, len) = loop {
        read(&mut resp)?;
        if let Some(at) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..at]).into_owned();
            let len = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("{method} {path}: no Content-Length: {head}"))?;
            resp.drain(..at + 4);
            break (head, len);
        }
    };
    while resp.len() < len {
        read(&mut resp)?;
    }
    let body = String::from_utf8_lossy(&resp[..len]);
    let json: Value =
        serde_json::from_str(&body).map_err(|e| format!("{method} {path}: {e}: {head}\n{body}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{method} {path}: {head}: {json}"));
    }
    Ok(json)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session that takes any certificate
    /// (the admin pages of a `--no-tls` VCH have one the appliance made) and saves
    /// downloads without asking.
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver (scripts/browser.sh installs it)"),
        );
        let deadline = Instant::now() + DRIVER_START;
        while http(port, "GET", "/status", None)
            .map(|v| v["value"]["ready"] != true)
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within {DRIVER_START:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // Any certificate is taken from Chromium's start too, so that a first
                // navigation does not depend on when chromedriver applies
                // acceptInsecureCerts to the page.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--ignore-certificate-errors",
                         "--no-first-run", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().join("user").display())],
                "prefs": {"download.default_directory": downloads.display().to_string(),
                          "download.prompt_for_download": false}
            }
        }}});
        let v = http(port, "POST", "/session", Some(&caps)).expect("a Chromium session");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver,
            port,
            session,
            _profile: profile,
            downloads,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.port, method, &path, body.as_ref()).unwrap_or_else(|e| panic!("{e}"))["value"]
            .clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The element `css` selects, if there is one.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({ "using": "css selector", "value": css });
        let v = http(self.port, "POST", &path, Some(&body)).ok()?;
        v["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(String::from)
    }

    /// Waits up to 30 s for an element `css` selects (a page still loading).
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(el) = self.try_find(css) {
                return el;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {} within 30 s",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to 30 s for the browser to be at a URL ending in `suffix`.
    pub fn wait_url(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.url().ends_with(suffix) {
            assert!(
                Instant::now() < deadline,
                "at {}, not …{suffix}, after 30 s; the page:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element `css` selects, waited for as [`Browser::wait_for`] waits (chromedriver
    /// may answer a navigation before the page it leads to is loaded).
    pub fn find(&self, css: &str) -> String {
        self.wait_for(css)
    }

    pub fn type_in(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    /// The rendered text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.call("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = http(self.port, "DELETE", &path, None);
        // chromedriver goes with `driver`, after the session.
    }
}
