//! The local AWS emulator for end-to-end tests: `tools/emulator.py` (moto server plus
//! realistic spot and on-demand prices) started as a child process per test, and SDK
//! configuration pointing at it.
//!
//! Each test starts its own [`Emulator`], so tests are isolated by process and may run in
//! parallel. The server binds 127.0.0.1 only and dies with the [`Emulator`] value. Nothing here
//! reads environment variables for credentials, region or endpoint, except `SPOTSWAP_PYTHON`
//! to find the interpreter.

// The harness serves several suites; not every suite uses every helper.
#![allow(dead_code)]

pub mod seed;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};

/// How long the emulator may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the emulator's output are kept for failure messages.
const LOG_LINES: usize = 400;
const LISTENING: &str = "spotswap-emulator listening on ";

/// A running `tools/emulator.py`. Dropping it kills the process.
pub struct Emulator {
    child: Child,
    endpoint: String,
    log: Arc<Mutex<VecDeque<String>>>,
    started_in: Duration,
}

/// One spot price pinned in the emulator (both history points of the series).
#[derive(Debug, Clone, PartialEq)]
pub struct SpotPricePin {
    pub region: String,
    pub availability_zone: String,
    pub instance_type: String,
    /// `None` pins every product description of the type in that AZ.
    pub product_description: Option<String>,
    pub price: f64,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOTSWAP_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !venv.exists() {
        panic!(
            "no Python with moto at {}: run `make test` (it creates .venv with moto), \
             or set SPOTSWAP_PYTHON",
            venv.display()
        );
    }
    venv
}

fn drain(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    first_lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    if let Some(tx) = &first_lines {
                        let _ = tx.send(text.clone());
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(text);
                }
            }
        }
    });
}

impl Emulator {
    /// Starts `tools/emulator.py --port 0` and waits (at most 60 s) until it listens.
    pub fn start() -> Emulator {
        let began = Instant::now();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/emulator.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0"])
            // moto reads these; a developer's shell must not change what tests see.
            .env_remove("MOTO_ACCOUNT_ID")
            .env_remove("MOTO_PORT")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        drain(child.stdout.take().unwrap(), log.clone(), Some(tx));
        drain(child.stderr.take().unwrap(), log.clone(), None);

        let deadline = began + START_TIMEOUT;
        let endpoint = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix(LISTENING) {
                        break url.trim().to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log
                        .lock()
                        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
                        .unwrap_or_default();
                    panic!("the emulator did not start ({e:?}); its output:\n{tail}");
                }
            }
        };
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "the emulator must bind 127.0.0.1 only, it said {endpoint}"
        );
        Emulator {
            child,
            endpoint,
            log,
            started_in: began.elapsed(),
        }
    }

    /// Starts plain moto server (`moto_server` from `.venv`, none of `tools/emulator.py`'s
    /// additions: no spot prices, no Pricing API, no `DescribeInstanceRefreshes`), as a user's
    /// own CI would run it, and waits (at most 60 s) until it accepts connections.
    pub fn start_plain_moto() -> Emulator {
        let began = Instant::now();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let server = python().with_file_name("moto_server");
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("MOTO_ACCOUNT_ID")
            .env_remove("MOTO_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
        let log = Arc::new(Mutex::new(VecDeque::new()));
        drain(child.stdout.take().unwrap(), log.clone(), None);
        drain(child.stderr.take().unwrap(), log.clone(), None);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if began.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log
                    .lock()
                    .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                panic!("moto_server did not start; its output:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Emulator {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            started_in: began.elapsed(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How long [`Emulator::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The last lines the emulator printed (stdout and stderr, interleaved).
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SDK configuration for `region` against this emulator: static test credentials, the
    /// emulator's endpoint for every service, the latest behaviour version. Built directly,
    /// so no environment variable or profile file is read.
    pub fn sdk_config(&self, region: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "spotswap-tests",
            )))
            .build()
    }

    /// An EC2 client for `region`.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region))
    }

    /// An Auto Scaling client for `region`.
    pub fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config(region))
    }

    /// A Pricing client, in us-east-1 as the real Price List API requires.
    pub fn pricing(&self) -> aws_sdk_pricing::Client {
        aws_sdk_pricing::Client::new(&self.sdk_config("us-east-1"))
    }

    /// Pins the spot price of one (region, AZ, type, product) series; `None` as the product
    /// pins every product of the type in that AZ.
    pub fn pin_spot_price(
        &self,
        region: &str,
        availability_zone: &str,
        instance_type: &str,
        product_description: Option<&str>,
        price: f64,
    ) {
        self.pin_spot_prices(&[SpotPricePin {
            region: region.into(),
            availability_zone: availability_zone.into(),
            instance_type: instance_type.into(),
            product_description: product_description.map(str::to_string),
            price,
        }]);
    }

    /// Pins several spot prices at once.
    pub fn pin_spot_prices(&self, pins: &[SpotPricePin]) {
        let body = serde_json::Value::Array(
            pins.iter()
                .map(|p| {
                    serde_json::json!({
                        "region": p.region,
                        "availability_zone": p.availability_zone,
                        "instance_type": p.instance_type,
                        "product_description": p.product_description,
                        "price": p.price,
                    })
                })
                .collect(),
        );
        self.control_post("/_spotswap/spot-prices", &body.to_string());
    }

    /// Forgets every pinned spot price.
    pub fn clear_pinned_prices(&self) {
        self.control_post("/_spotswap/spot-prices", r#"{"clear": true}"#);
    }

    /// Makes DescribeInstanceRefreshes list one refresh of `group` with `status` (`Pending`,
    /// `InProgress`, `Successful`, `Cancelled`, ...). moto has no instance refreshes; without
    /// this, the emulator lists none, as AWS does for a group never refreshed.
    pub fn set_instance_refresh(&self, region: &str, group: &str, status: &str) {
        let body = serde_json::json!([{"region": region, "group": group, "status": status}]);
        self.control_post("/_spotswap/instance-refreshes", &body.to_string());
    }

    /// Forgets every instance refresh set with [`Emulator::set_instance_refresh`].
    pub fn clear_instance_refreshes(&self) {
        self.control_post("/_spotswap/instance-refreshes", r#"{"clear": true}"#);
    }

    /// Answers `rate` (0 to 1) of the AWS calls from now on as AWS answers a throttled call
    /// (EC2 `RequestLimitExceeded` 503, Auto Scaling `Throttling` 400, Pricing
    /// `ThrottlingException` 400), drawn from `seed`; 0 stops it.
    pub fn set_throttling(&self, rate: f64, seed: u64) {
        let body = serde_json::json!({"rate": rate, "seed": seed});
        self.control_post("/_spotswap/throttling", &body.to_string());
    }

    /// Calls and throttled calls per service since [`Emulator::set_throttling`].
    pub fn throttling(&self) -> serde_json::Value {
        let answer = self.control("GET", "/_spotswap/throttling", "");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    fn control_post(&self, path: &str, body: &str) {
        self.control("POST", path, body);
    }

    fn control(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("connecting to the emulator at {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("sending to the emulator");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("reading the emulator's answer");
        let status = response.lines().next().unwrap_or_default();
        assert!(
            status.split_whitespace().nth(1) == Some("200"),
            "the emulator refused {method} {path}: {response}"
        );
        response
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid (SIGKILL), never a process group or name.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- emulator output (last {LOG_LINES} lines) ---\n{}",
                self.log_tail()
            );
        }
    }
}
