//! A local implementation of the Lambda runtime API (Lambda Developer Guide, "Using the Lambda
//! runtime API for custom runtimes"), enough to run the `spotswap-lambda` binary as Lambda runs
//! it: the function long-polls `GET /2018-06-01/runtime/invocation/next` for an event and posts
//! its answer to `POST /2018-06-01/runtime/invocation/{id}/response` or `.../{id}/error`; an
//! initialisation failure may be posted to `POST /2018-06-01/runtime/init/error`.
//!
//! Std only: a `TcpListener` on 127.0.0.1 (never another interface), a thread per connection,
//! HTTP/1.1 with `Content-Length` (and chunked request bodies), keep-alive. [`spawn_function`]
//! starts the function binary against it with a clean environment and keeps what it prints.
//!
//! Shared by the `it` test suite and `examples/lambda_bench.rs` (through `#[path]`).

// The suite and the bench use different parts.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long [`RuntimeApi::invoke`] waits for the function's answer.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// The ARN the function is told it was invoked as.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:spotswap";
const PREFIX: &str = "/2018-06-01/runtime";
/// Largest request head or body accepted.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// What became of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The function posted a response: its body, as JSON (a body that is not JSON is a string).
    Response(Value),
    /// The function posted an error: `errorType` (or the `Lambda-Runtime-Function-Error-Type`
    /// header when the body has none) and `errorMessage`.
    Error { error_type: String, message: String },
}

/// An initialisation error the function posted to `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    pub error_type: String,
    pub message: String,
}

struct Pending {
    id: String,
    event: Value,
    deadline_ms: u128,
    trace_id: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Delivered to the function, not answered yet.
    in_flight: HashMap<String, Pending>,
    answers: HashMap<String, Invocation>,
    init_error: Option<InitError>,
    first_poll: Option<Instant>,
    polls: u64,
    next_id: u64,
    /// Set when the function process has exited (by [`FunctionProcess`]'s watcher).
    function_exited: Option<String>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running runtime API server. Dropping it stops accepting connections.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.lock().shutdown {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
        RuntimeApi { addr, shared }
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `event` with a deadline `deadline_in` from now, and waits (at most
    /// [`INVOKE_TIMEOUT`]) for the function's response or error. Panics if the function does
    /// not answer in time or exits first.
    pub fn invoke(&self, event: Value, deadline_in: Duration) -> Invocation {
        let mut state = self.shared.lock();
        state.next_id += 1;
        let n = state.next_id;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        let id = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            nanos.as_secs() as u32,
            n & 0xffff,
            ((nanos.subsec_nanos() as u64) << 16) | (n & 0xffff)
        );
        let deadline_ms = (nanos + deadline_in).as_millis();
        let trace_id = format!(
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
            nanos.as_secs() as u32,
            nanos.as_nanos() ^ u128::from(n),
            n
        );
        state.queue.push_back(Pending {
            id: id.clone(),
            event,
            deadline_ms,
            trace_id,
        });
        self.shared.changed.notify_all();
        let until = Instant::now() + INVOKE_TIMEOUT;
        loop {
            if let Some(answer) = state.answers.remove(&id) {
                return answer;
            }
            if let Some(exit) = &state.function_exited {
                panic!("the function exited ({exit}) before answering invocation {id}");
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the function did not answer invocation {id} within {INVOKE_TIMEOUT:?}"
            );
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The error the function posted to `/runtime/init/error`, if it did.
    pub fn init_error(&self) -> Option<InitError> {
        self.shared.lock().init_error.clone()
    }

    /// Time from `start` to the function's first `/next` request (its initialisation time when
    /// `start` is the process start), or `None` if it has not polled yet.
    pub fn first_poll_after(&self, start: Instant) -> Option<Duration> {
        self.shared
            .lock()
            .first_poll
            .map(|t| t.saturating_duration_since(start))
    }

    /// Waits (at most `timeout`) for the function's first `/next` request; whether it came.
    /// Returns early if the function exits.
    pub fn wait_for_first_poll(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.first_poll.is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || state.function_exited.is_some() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many `/next` requests the function has made.
    pub fn polls(&self) -> u64 {
        self.shared.lock().polls
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_all();
        // Wake the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one request; `None` when the client closed the connection or sent garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    // Tolerate empty lines between requests (RFC 9112 section 2.2).
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut head_size = line.len();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head_size += line.len();
        if head_size > MAX_BODY {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let size_text = line.trim().split(';').next()?;
            let size = usize::from_str_radix(size_text, 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return None;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            reader.read_exact(&mut req.body[start..]).ok()?;
            line.clear();
            reader.read_line(&mut line).ok()?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        req.body.resize(len, 0);
        reader.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}

fn write_response(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errorType": error_type, "errorMessage": message})
        .to_string()
        .into_bytes()
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        if shared.lock().shutdown {
            return;
        }
        let keep_alive = req.keep_alive();
        let written = route(&req, &mut writer, shared, keep_alive);
        if !written || !keep_alive {
            return;
        }
    }
}

/// Answers one request; whether the connection is still usable.
fn route(req: &Request, out: &mut TcpStream, shared: &Shared, keep_alive: bool) -> bool {
    let path = req.path.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return not_found(out, keep_alive);
    };
    let accepted = |out: &mut TcpStream| {
        write_response(out, "202 Accepted", &[], br#"{"status":"OK"}"#, keep_alive).is_ok()
    };
    match (req.method.as_str(), rest) {
        ("GET", "/invocation/next") => next_invocation(out, shared, keep_alive),
        ("POST", "/init/error") => {
            let (error_type, message) = diagnostic(req);
            shared.lock().init_error = Some(InitError {
                error_type,
                message,
            });
            shared.changed.notify_all();
            accepted(out)
        }
        ("POST", rest) if rest.starts_with("/invocation/") => {
            let rest = &rest["/invocation/".len()..];
            let Some((id, what)) = rest.split_once('/') else {
                return not_found(out, keep_alive);
            };
            let answer = match what {
                "response" => {
                    Invocation::Response(serde_json::from_slice(&req.body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&req.body).into_owned())
                    }))
                }
                "error" => {
                    let (error_type, message) = diagnostic(req);
                    Invocation::Error {
                        error_type,
                        message,
                    }
                }
                _ => return not_found(out, keep_alive),
            };
            let mut state = shared.lock();
            if state.in_flight.remove(id).is_none() {
                drop(state);
                let body = error_body(
                    "InvalidRequestID",
                    &format!("no invocation {id} is waiting for an answer"),
                );
                return write_response(out, "400 Bad Request", &[], &body, keep_alive).is_ok();
            }
            state.answers.insert(id.to_string(), answer);
            drop(state);
            shared.changed.notify_all();
            accepted(out)
        }
        _ => not_found(out, keep_alive),
    }
}

fn not_found(out: &mut TcpStream, keep_alive: bool) -> bool {
    let body = error_body("NotFound", "no such runtime API resource");
    write_response(out, "404 Not Found", &[], &body, keep_alive).is_ok()
}

/// `errorType` and `errorMessage` of an error post (the header when the body has no type).
fn diagnostic(req: &Request) -> (String, String) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let error_type = text("errorType")
        .or_else(|| {
            req.header("lambda-runtime-function-error-type")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let message =
        text("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(&req.body).into_owned());
    (error_type, message)
}

/// The long poll: waits for an event, hands it over with the invocation headers.
fn next_invocation(out: &mut TcpStream, shared: &Shared, keep_alive: bool) -> bool {
    let mut state = shared.lock();
    state.polls += 1;
    if state.first_poll.is_none() {
        state.first_poll = Some(Instant::now());
    }
    shared.changed.notify_all();
    let pending = loop {
        if state.shutdown {
            return false;
        }
        if let Some(p) = state.queue.pop_front() {
            break p;
        }
        state = shared
            .changed
            .wait(state)
            .unwrap_or_else(|e| e.into_inner());
    };
    drop(state);
    let body = pending.event.to_string().into_bytes();
    let headers = [
        ("Lambda-Runtime-Aws-Request-Id", pending.id.clone()),
        (
            "Lambda-Runtime-Deadline-Ms",
            pending.deadline_ms.to_string(),
        ),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            FUNCTION_ARN.to_string(),
        ),
        ("Lambda-Runtime-Trace-Id", pending.trace_id.clone()),
    ];
    let sent = write_response(out, "200 OK", &headers, &body, keep_alive).is_ok();
    let mut state = shared.lock();
    if sent {
        state.in_flight.insert(pending.id.clone(), pending);
    } else {
        // The function went away mid-poll: the event waits for the next poll.
        state.queue.push_front(pending);
    }
    sent
}

/// The function binary, running against a [`RuntimeApi`]. Dropping it kills the process (by
/// its own PID) and reaps it.
pub struct FunctionProcess {
    child: Arc<Mutex<Child>>,
    pid: u32,
    started: Instant,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    exit: Arc<Mutex<Option<ExitStatus>>>,
    stop_watching: Arc<AtomicBool>,
}

/// Starts the `spotswap-lambda` binary of this build against `runtime`, the AWS emulator at
/// `aws_endpoint` and `region`. Cargo names the binary in tests built with `--features
/// lambda`; elsewhere it is looked for in `target/<profile>/`, above the running executable.
pub fn spawn_function(
    runtime: &RuntimeApi,
    aws_endpoint: &str,
    region: &str,
    extra_env: &[(&str, &str)],
) -> FunctionProcess {
    let binary = match option_env!("CARGO_BIN_EXE_spotswap-lambda") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(|p| p.join("spotswap-lambda")))
            .filter(|b| b.exists())
            .expect("the spotswap-lambda binary (build it with --features lambda)"),
    };
    spawn_binary(&binary, runtime, aws_endpoint, region, extra_env)
}

/// Starts the given function binary with a clean environment, as Lambda would: the runtime
/// API, the function's name, memory, version and JSON log format, the region, the emulator as
/// every service's endpoint, test credentials, no instance metadata, `REGIONS=<region>`, then
/// `extra_env` (settings such as `REPLACEMENTS_PER_PASS`; they override the defaults).
pub fn spawn_binary(
    binary: &Path,
    runtime: &RuntimeApi,
    aws_endpoint: &str,
    region: &str,
    extra_env: &[(&str, &str)],
) -> FunctionProcess {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr())
        .env("AWS_LAMBDA_FUNCTION_NAME", "spotswap")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_REGION", region)
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("REGIONS", region);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let pid = child.id();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    drain(child.stdout.take().expect("piped stdout"), stdout.clone());
    drain(child.stderr.take().expect("piped stderr"), stderr.clone());
    let child = Arc::new(Mutex::new(child));
    let exit = Arc::new(Mutex::new(None));
    let stop_watching = Arc::new(AtomicBool::new(false));
    // Watches for the process's exit, so that an invocation fails at once rather than after
    // the timeout, and so that `wait_exit` can tell.
    {
        let (child, exit, stop) = (child.clone(), exit.clone(), stop_watching.clone());
        let shared = runtime.shared.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let status = child
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .try_wait()
                    .ok()
                    .flatten();
                if let Some(status) = status {
                    *exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    shared.lock().function_exited = Some(status.to_string());
                    shared.changed.notify_all();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    FunctionProcess {
        child,
        pid,
        started,
        stdout,
        stderr,
        exit,
        stop_watching,
    }
}

fn drain(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                }
            }
        }
    });
}

impl FunctionProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the process was started (just before the spawn).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The lines printed to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The lines printed to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every line printed so far, stdout's then stderr's, non-empty ones only.
    pub fn lines(&self) -> Vec<String> {
        let mut all = self.stdout_lines();
        all.extend(self.stderr_lines());
        all.retain(|l| !l.trim().is_empty());
        all
    }

    /// Waits (at most `timeout`) for a printed line (stdout or stderr) that satisfies `pred`.
    /// Output is read by other threads, so a line printed just before an answer may arrive
    /// just after it.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for the process to exit; its status if it did.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(s) = *self.exit.lock().unwrap_or_else(|e| e.into_inner()) {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.stop_watching.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // Child::kill signals this child's own PID (SIGKILL), and nothing once it was reaped.
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            drop(child);
            eprintln!(
                "--- spotswap-lambda (pid {}) output ---\n{}",
                self.pid,
                self.output()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request on a kept-alive connection: (status, headers, body). `chunked` sends the
    /// body with chunked transfer encoding.
    fn call(
        reader: &mut BufReader<TcpStream>,
        method: &str,
        path: &str,
        extra: &str,
        body: &str,
        chunked: bool,
    ) -> (u16, Vec<(String, String)>, String) {
        let framing = if chunked {
            format!(
                "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        } else {
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        };
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}{framing}");
        reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        (status, headers, String::from_utf8(body).unwrap())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    #[test]
    fn it_serves_the_documented_protocol_on_one_kept_alive_connection() {
        let start = Instant::now();
        let api = RuntimeApi::start();
        assert!(api.addr().starts_with("127.0.0.1:"), "{}", api.addr());
        assert_eq!(api.first_poll_after(start), None);
        let addr = api.addr();
        let function = std::thread::spawn(move || {
            let mut c = BufReader::new(TcpStream::connect(addr).unwrap());
            let next = "/2018-06-01/runtime/invocation/next";
            let (status, h, body) = call(&mut c, "GET", next, "", "", false);
            assert_eq!(status, 200);
            assert_eq!(body, r#"{"n":1}"#);
            let id = header(&h, "lambda-runtime-aws-request-id").to_string();
            let deadline: u128 = header(&h, "lambda-runtime-deadline-ms").parse().unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let left = deadline.saturating_sub(now.as_millis());
            assert!((50_000..=60_000).contains(&left), "{left} ms left");
            assert_eq!(
                header(&h, "lambda-runtime-invoked-function-arn"),
                FUNCTION_ARN
            );
            assert!(header(&h, "lambda-runtime-trace-id").starts_with("Root=1-"));
            let path = format!("/2018-06-01/runtime/invocation/{id}/response");
            let (status, _, _) = call(&mut c, "POST", &path, "", r#"{"ok":true}"#, true);
            assert_eq!(status, 202);
            // Answering twice is refused.
            let (status, _, body) = call(&mut c, "POST", &path, "", "{}", false);
            assert_eq!(status, 400, "{body}");

            let (_, h, body) = call(&mut c, "GET", next, "", "", false);
            assert_eq!(body, r#"{"n":2}"#);
            let id = header(&h, "lambda-runtime-aws-request-id");
            let path = format!("/2018-06-01/runtime/invocation/{id}/error");
            let error = r#"{"errorMessage":"boom","errorType":"Handled"}"#;
            let extra = "Lambda-Runtime-Function-Error-Type: Unhandled\r\n";
            let (status, _, _) = call(&mut c, "POST", &path, extra, error, false);
            assert_eq!(status, 202);

            let init = r#"{"errorMessage":"bad setting","errorType":"Runtime.Init"}"#;
            let (status, _, _) = call(
                &mut c,
                "POST",
                "/2018-06-01/runtime/init/error",
                "",
                init,
                false,
            );
            assert_eq!(status, 202);
            let (status, _, _) = call(&mut c, "GET", "/elsewhere", "", "", false);
            assert_eq!(status, 404);
        });
        let d = Duration::from_secs(60);
        assert_eq!(
            api.invoke(serde_json::json!({"n": 1}), d),
            Invocation::Response(serde_json::json!({"ok": true}))
        );
        assert_eq!(
            api.invoke(serde_json::json!({"n": 2}), d),
            Invocation::Error {
                error_type: "Handled".into(),
                message: "boom".into()
            }
        );
        function.join().unwrap();
        assert_eq!(
            api.init_error(),
            Some(InitError {
                error_type: "Runtime.Init".into(),
                message: "bad setting".into()
            })
        );
        assert_eq!(api.polls(), 2);
        assert!(api.first_poll_after(start).is_some());
    }
}
