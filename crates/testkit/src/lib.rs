//! Real backends for tests. Each test gets its own PostgreSQL database (dropped afterwards) and,
//! where it must stop and restart a server, its own `nats-server` or `redis-server` process on a
//! free port, so tests can run in parallel and never disturb the machine's shared services.
//!
//! When a backend is missing the test is skipped with a message, unless
//! `DISTILLGUARD_REQUIRE_SERVICES=1` (set by `.ci/run`), which turns the skip into a failure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where throwaway databases are created (`DISTILLGUARD_TEST_POSTGRES` overrides).
pub fn postgres_admin_url() -> String {
    std::env::var("DISTILLGUARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Redis shared by tests that do not stop it (`DISTILLGUARD_TEST_REDIS` overrides).
pub fn redis_url() -> String {
    std::env::var("DISTILLGUARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// NATS shared by tests that do not stop it (`DISTILLGUARD_TEST_NATS` overrides).
pub fn nats_url() -> String {
    std::env::var("DISTILLGUARD_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Says why a backend is missing; panics if backends are required.
pub fn unavailable(what: &str, why: impl std::fmt::Display) {
    if std::env::var("DISTILLGUARD_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is required (DISTILLGUARD_REQUIRE_SERVICES=1) but unavailable: {why}");
    }
    eprintln!(
        "SKIPPED: {what} unavailable ({why}); set DISTILLGUARD_REQUIRE_SERVICES=1 to require it"
    );
}

/// The built-in engine's model file for a test: `DISTILLGUARD_MODEL`, else `models/…` at the
/// workspace root. `None` (the test skips, saying so) when it is absent, unless
/// `DISTILLGUARD_REQUIRE_MODEL` is set (`.ci/run` fetches the file and sets it): then a panic.
pub fn model_file() -> Option<PathBuf> {
    let path = std::env::var_os("DISTILLGUARD_MODEL").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        },
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("DISTILLGUARD_REQUIRE_MODEL").is_none(),
        "DISTILLGUARD_REQUIRE_MODEL is set but {} is missing",
        path.display()
    );
    eprintln!(
        "SKIPPED: the model file {} is absent; scripts/fetch-model.sh fetches it",
        path.display()
    );
    None
}

/// A database that exists for the life of this value.
pub struct TempDb {
    pub url: String,
    name: String,
}

/// A fresh, empty PostgreSQL database, or `None` (after [`unavailable`]) when there is no server.
/// Safe to call from async tests: the blocking client runs on a thread of its own.
pub fn postgres() -> Option<TempDb> {
    std::thread::spawn(postgres_blocking)
        .join()
        .expect("creating a test database")
}

fn postgres_blocking() -> Option<TempDb> {
    let admin = postgres_admin_url();
    let mut client = match postgres::Client::connect(&admin, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            unavailable("PostgreSQL", e);
            return None;
        }
    };
    let name = format!("dg_test_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(TempDb {
        url: format!("{base}/{name}"),
        name,
    })
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&postgres_admin_url(), postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// True when something accepts TCP connections at `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server process of our own that a test may stop and start again on the same port and data.
pub struct Server {
    pub port: u16,
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `nats-server` with JetStream, its store in a temporary directory.
    pub fn nats() -> Option<Server> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.path().display().to_string(),
        ];
        Self::spawn(
            "nats-server",
            &["/usr/sbin/nats-server", "nats-server"],
            args,
            port,
            dir,
        )
    }

    /// `redis-server` that keeps nothing on disk.
    pub fn redis() -> Option<Server> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let args = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        Self::spawn(
            "redis-server",
            &["/usr/bin/redis-server", "redis-server"],
            args,
            port,
            dir,
        )
    }

    fn spawn(
        what: &str,
        candidates: &[&'static str],
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
    ) -> Option<Server> {
        let program = candidates
            .iter()
            .copied()
            .find(|p| !p.starts_with('/') || PathBuf::from(p).exists())?;
        let mut s = Server {
            port,
            program,
            args,
            child: None,
            _dir: dir,
        };
        if let Err(e) = s.start() {
            unavailable(what, e);
            return None;
        }
        Some(s)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&mut self) -> std::io::Result<()> {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(self.addr()) {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{} did not listen on {}",
                    self.program,
                    self.addr()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server at once, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `python3` can import `module`, for the tests that drive a real Python package
/// (the producers of the formats distillguard imports). When it cannot, the test is skipped with a message, unless
/// `required_env` is set (CI sets it), where it fails: a missing install step must not pass.
pub fn python_module_or_skip(module: &str, required_env: &str, install: &str) -> bool {
    let available = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var(required_env).is_err(),
            "python3 with the {module} package is required: {install}"
        );
        eprintln!("SKIPPED: python3 with the {module} package is not installed ({install})");
    }
    available
}

/// Has the OpenTelemetry GenAI instrumentation in a Python child record message content:
/// `capture` is `SPAN_ONLY` (on the spans) or `EVENT_ONLY` (as log events). Content capture
/// sits behind the latest experimental semantic conventions, so both settings go together.
pub fn otel_genai_content<'a>(
    command: &'a mut std::process::Command,
    capture: &str,
) -> &'a mut std::process::Command {
    command
        .env(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        )
        .env(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            capture,
        )
}

/// Has a Python child find `litellm_writer` (the LiteLLM logging callback that writes its
/// payloads as JSON lines, shared by the tests that drive the real `litellm`), and read the
/// cost map bundled with LiteLLM instead of fetching it.
pub fn litellm_writer(command: &mut std::process::Command) -> &mut std::process::Command {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
    let path = match std::env::var_os("PYTHONPATH") {
        Some(p) if !p.is_empty() => {
            let mut all = std::ffi::OsString::from(dir);
            all.push(":");
            all.push(p);
            all
        }
        _ => dir.into(),
    };
    command
        .env("PYTHONPATH", path)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
}
