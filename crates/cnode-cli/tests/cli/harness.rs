//! Running the `cnode` binary in tests.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cnode");

/// A data directory in a temp dir, and commands against it.
pub(crate) struct Cnode {
    _tmp: tempfile::TempDir,
    pub(crate) data: PathBuf,
    /// Run commands through `ip netns exec NS` when set.
    pub(crate) netns: Option<String>,
}

impl Cnode {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("cnode-cli")
            .tempdir()
            .unwrap();
        let data = tmp.path().join("data");
        Self {
            _tmp: tmp,
            data,
            netns: None,
        }
    }

    pub(crate) fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        c.arg("--data").arg(&self.data);
        c.env("CNODE_LOG", "warn")
            .env_remove("CNODE_DATA")
            .env_remove("CNODE_PASSPHRASE")
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn run_cmd(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    pub(crate) fn init(&self) {
        let out = self.run_cmd(&["init"]);
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `cnode run` on ephemeral loopback ports with mDNS off, plus `extra`.
    pub(crate) fn spawn_run(&self, extra: &[&str]) -> Running {
        self.spawn_run_env(extra, &[])
    }

    /// [`Cnode::spawn_run`] with extra environment variables.
    pub(crate) fn spawn_run_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let mut c = self.command();
        c.envs(env.iter().copied());
        c.args(["run", "--api", "127.0.0.1:0"]);
        if !extra.contains(&"--listen") {
            c.args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
            ]);
        }
        if !extra.contains(&"--mdns-on") {
            c.arg("--no-mdns");
        }
        c.args(extra.iter().filter(|a| **a != "--mdns-on"));
        c.env("CNODE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let child = c.spawn().unwrap();
        Running {
            child,
            started,
            data: self.data.clone(),
            netns: self.netns.clone(),
        }
    }

    pub(crate) fn status_json(&self) -> serde_json::Value {
        let out = self.run_cmd(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(crate) fn peers_json(&self) -> serde_json::Value {
        let out = self.run_cmd(&["peers", "--json"]);
        assert!(
            out.status.success(),
            "peers: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }
}

/// A running `cnode run` process.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) started: Instant,
    data: PathBuf,
    netns: Option<String>,
}

impl Running {
    pub(crate) fn from_child(child: Child, data: PathBuf) -> Self {
        Self {
            child,
            started: Instant::now(),
            data,
            netns: None,
        }
    }

    /// Waits (bounded) until the node has written api.json and answers /healthz.
    pub(crate) fn wait_api(&mut self, limit: Duration) -> Duration {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("cnode run exited early with {status}: {err}");
            }
            if let Ok(text) = std::fs::read_to_string(self.data.join("api.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(addr) = v["addr"].as_str()
                && self.healthz(addr)
            {
                return self.started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "API did not come up within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub(crate) fn terminate(
        mut self,
        limit: Duration,
    ) -> (std::process::ExitStatus, Duration, String) {
        let t = Instant::now();
        signal(self.child.id(), "TERM");
        let deadline = t + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cnode did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        (status, t.elapsed(), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

impl Running {
    /// True when the API answers; inside a namespace, asks through `cnode status`
    /// run there (the API's 127.0.0.1 is the namespace's own).
    fn healthz(&self, addr: &str) -> bool {
        match &self.netns {
            None => healthz(addr),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, BIN, "--data"])
                .arg(&self.data)
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }
}

/// A raw HTTP/1.1 GET /healthz on `addr`, true on 200.
fn healthz(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// Stderr as text, and the number of non-empty lines.
pub(crate) fn stderr_lines(out: &Output) -> (String, usize) {
    let s = String::from_utf8_lossy(&out.stderr).into_owned();
    let n = s.lines().filter(|l| !l.trim().is_empty()).count();
    (s, n)
}

/// Asserts a clear one-line error and a non-zero exit; returns the line.
pub(crate) fn assert_one_line_error(out: &Output, what: &str) -> String {
    let (err, lines) = stderr_lines(out);
    assert!(
        !out.status.success(),
        "{what}: expected failure, got success"
    );
    assert_eq!(lines, 1, "{what}: expected one line on stderr, got:\n{err}");
    assert!(err.starts_with("error"), "{what}: {err}");
    err.trim().to_owned()
}

pub(crate) fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}
