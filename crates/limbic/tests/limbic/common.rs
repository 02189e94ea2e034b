//! Shared helpers for the end-to-end tests: they run the real `limbic` binary on the real
//! default model (`LIMBIC_TEST_MODEL`, else limbic's cache) and real SQLite files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_limbic"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LIMBIC_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("LIMBIC_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/limbic")))
        .expect("HOME or LIMBIC_HOME");
    let p = home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} missing: run `limbic model fetch` (or set LIMBIC_TEST_MODEL)",
        p.display()
    );
    p
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("limbic-e2e-")
        .tempdir()
        .expect("tempdir")
}

/// A `limbic` command with the test model and an isolated LIMBIC_HOME.
pub fn limbic(home: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(repo())
        .env("LIMBIC_HOME", home)
        .env("LIMBIC_MODEL", model_path())
        .env_remove("LIMBIC_ADDR")
        .env_remove("LIMBIC_AUDIT")
        .env_remove("LIMBIC_POLICY")
        .env_remove("LIMBIC_PACK");
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run limbic")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The token of each running test daemon, by address: `http` sends it.
static TOKENS: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The token of the daemon at `addr` (empty when none is known).
pub fn token_for(addr: &str) -> String {
    TOKENS
        .lock()
        .map(|t| t.get(addr).cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// A running `limbic serve`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    /// The bearer token the daemon requires (from `$LIMBIC_HOME/token`).
    pub token: String,
}

impl Daemon {
    pub fn start(home: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = limbic(home);
        cmd.arg("serve");
        if !extra.contains(&"--addr") {
            cmd.args(["--addr", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = BufReader::new(stderr);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut addr = None;
        let mut seen = String::new();
        while Instant::now() < deadline {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(rest) = line
                .trim()
                .strip_prefix("limbic serve: listening on http://")
            {
                addr = Some(rest.to_string());
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("daemon did not start; stderr:\n{seen}"));
        // Keep draining stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = reader.read_to_string(&mut sink);
        });
        let token = std::fs::read_to_string(home.join("token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        if let Ok(mut tokens) = TOKENS.lock() {
            tokens.insert(addr.clone(), token.clone());
        }
        Daemon { child, addr, token }
    }

    /// Sends SIGTERM and waits for the exit status (graceful shutdown).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 request over loopback with the daemon's token; returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let token = token_for(addr);
    let auth = format!("Bearer {token}");
    let (status, _, body) = http_raw(addr, method, path, body, &[("Authorization", &auth)]);
    (status, body)
}

/// Minimal HTTP/1.1 request with exactly the given extra headers (a `Host` among them
/// replaces the default); returns (status, head, body).
pub fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (e.g. 413) before reading a large body; ignore write errors.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (status, head, body)
}

/// Like `http` (with the token) but `None` when the daemon is gone or the answer is cut.
pub fn try_http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token_for(addr),
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// `limbic serve` with `extra` that must refuse to start; returns its stderr.
pub fn serve_refused(home: &Path, extra: &[&str]) -> String {
    let o = run(limbic(home)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(extra));
    assert!(!o.status.success(), "serve {extra:?} started");
    stderr(&o)
}

pub fn step_json(session: &str, text: &str, tool: &str, args: serde_json::Value) -> String {
    serde_json::json!({"session": session, "text": text, "action": {"tool": tool, "args": args}})
        .to_string()
}
