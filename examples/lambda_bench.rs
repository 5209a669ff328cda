//! `make bench-lambda`: figures for the Lambda function, measured locally. Never a test.
//!
//! ```text
//! cargo run --release --features lambda --example lambda_bench -- [--zip PATH] [--binary PATH] [--runs N]
//! ```
//!
//! For each of N runs (default 10) it starts the function binary (default: the
//! `spotswap-lambda` next to this example, in `target/<profile>/`, which it builds first with
//! `cargo build [--release] --features lambda --bin spotswap-lambda`) against a local Lambda
//! runtime API, with the local AWS emulator (moto, on 127.0.0.1) as every service's endpoint,
//! and measures its initialisation (process start to its first `/next` poll) and its first
//! scheduled invocation (a cold pass over an empty account). It prints min/median/max of both,
//! the binary's size, and the zip's size when `--zip` is given (`make lambda` builds
//! `target/lambda/<arch>/spotswap-lambda/bootstrap.zip`). Nothing here reaches the internet.
//!
//! These are local figures: Lambda's own cold start adds the sandbox and the zip download, and
//! its CPU share depends on the memory size.

#[path = "../tests/it/moto/mod.rs"]
mod moto;
#[path = "../tests/it/runtime_api.rs"]
mod runtime_api;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use moto::Emulator;
use runtime_api::{Invocation, RuntimeApi, spawn_binary};

const REGION: &str = "us-east-1";
/// The invocation's deadline: Lambda's longest timeout, so the pass is never cut short.
const DEADLINE: Duration = Duration::from_secs(900);
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: lambda_bench [--zip PATH] [--binary PATH] [--runs N]

  --binary PATH  the function binary (default: spotswap-lambda next to this example)
  --zip PATH     the deployment zip, for its size (make lambda builds
                 target/lambda/x86_64/spotswap-lambda/bootstrap.zip)
  --runs N       how many cold starts to measure (default 10)";

struct Args {
    binary: Option<PathBuf>,
    zip: Option<PathBuf>,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        binary: None,
        zip: None,
        runs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--binary" => args.binary = Some(value("--binary")?.into()),
            "--zip" => args.zip = Some(value("--zip")?.into()),
            "--runs" => {
                let v = value("--runs")?;
                args.runs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--runs takes a positive number, not {v:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// `target/<profile>/examples/lambda_bench` -> `target/<profile>/spotswap-lambda`.
fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench knows where it runs from");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("the bench runs from target/<profile>/examples")
        .join("spotswap-lambda")
}

/// Builds the default binary (a no-op when it is up to date), so that the figures are the
/// current source's: `cargo run --example` builds the example, never the crate's binaries.
fn build_default_binary() -> Result<PathBuf, String> {
    let binary = default_binary();
    let profile_dir = binary.parent().expect("target/<profile>");
    let profile = profile_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "--features",
        "lambda",
        "--bin",
        "spotswap-lambda",
    ]);
    build
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    match profile.as_str() {
        "release" => {
            build.arg("--release");
        }
        "debug" => {}
        other => {
            return Err(format!(
                "this example runs from target/{other}/examples: pass --binary PATH"
            ));
        }
    }
    if let Some(target_dir) = profile_dir.parent() {
        build.arg("--target-dir").arg(target_dir);
    }
    eprintln!(
        "building {} (cargo build{} --features lambda --bin spotswap-lambda)",
        binary.display(),
        if profile == "release" {
            " --release"
        } else {
            ""
        }
    );
    let status = build
        .status()
        .map_err(|e| format!("running cargo to build spotswap-lambda: {e}"))?;
    if !status.success() || !binary.exists() {
        return Err(format!(
            "building spotswap-lambda failed ({status}): build it with `cargo build --release \
             --features lambda --bin spotswap-lambda`, or pass --binary PATH"
        ));
    }
    Ok(binary)
}

/// `release`, `debug` or unknown, from the binary's place in `target/`.
fn profile_of(binary: &Path) -> &'static str {
    let parts: Vec<String> = binary
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.iter().any(|p| p == "release") {
        "release build"
    } else if parts.iter().any(|p| p == "debug") {
        "debug build (not representative)"
    } else {
        "build profile unknown"
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
}

fn size(bytes: u64) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// (min, median, max).
fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    (v[0], median, v[n - 1])
}

fn scheduled_event() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/events/scheduled.json"
    );
    let mut e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the scheduled fixture"))
            .expect("JSON");
    e["region"] = serde_json::json!(REGION);
    e
}

/// One cold start: (initialisation, first invocation).
fn run_once(binary: &Path, emu: &Emulator, event: &serde_json::Value) -> (Duration, Duration) {
    let api = RuntimeApi::start();
    let function = spawn_binary(binary, &api, emu.endpoint(), REGION, &[]);
    if !api.wait_for_first_poll(INIT_TIMEOUT) {
        panic!(
            "the function did not poll for an event within {INIT_TIMEOUT:?}\n{}",
            function.output()
        );
    }
    let init = api.first_poll_after(function.started()).expect("it polled");
    let began = Instant::now();
    let answer = api.invoke(event.clone(), DEADLINE);
    let invocation = began.elapsed();
    match answer {
        Invocation::Response(report) => {
            let failures = report["totals"]["failures"].as_u64();
            assert_eq!(failures, Some(0), "the pass failed: {report:#}");
        }
        Invocation::Error {
            error_type,
            message,
        } => panic!("the invocation failed ({error_type}): {message}"),
    }
    (init, invocation)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => match build_default_binary() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let Ok(meta) = std::fs::metadata(&binary) else {
        eprintln!("{} is missing", binary.display());
        return ExitCode::from(2);
    };
    let zip_size = match &args.zip {
        Some(zip) => match std::fs::metadata(zip) {
            Ok(m) => Some(m.len()),
            Err(e) => {
                eprintln!("{}: {e} (run `make lambda` to build it)", zip.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("spotswap-lambda bench: local figures, not Lambda's");
    println!(
        "measured: initialisation (process start -> first /next poll of the runtime API) and the \
         first scheduled invocation (one cold pass over an empty account in {REGION} on the local \
         AWS emulator), {} run(s), a new process each, after one untimed warm-up run",
        args.runs
    );
    println!(
        "machine:  {cpus} CPU(s){}, {} {}",
        cpu_model().map(|m| format!(" ({m})")).unwrap_or_default(),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!("binary:   {} ({})", binary.display(), profile_of(&binary));

    let emu = Emulator::start();
    println!(
        "emulator: {} (started in {})",
        emu.endpoint(),
        ms(emu.started_in())
    );
    let event = scheduled_event();
    // One untimed run first, so that the emulator's own first-request costs are not counted.
    let _ = run_once(&binary, &emu, &event);
    let mut inits = Vec::new();
    let mut invocations = Vec::new();
    for _ in 0..args.runs {
        let (init, invocation) = run_once(&binary, &emu, &event);
        inits.push(init);
        invocations.push(invocation);
    }

    println!();
    println!("{:<28} {:>10} {:>10} {:>10}", "", "min", "median", "max");
    for (name, v) in [
        ("initialisation", inits),
        ("first scheduled invocation", invocations),
    ] {
        let (min, median, max) = stats(v);
        println!(
            "{name:<28} {:>10} {:>10} {:>10}",
            ms(min),
            ms(median),
            ms(max)
        );
    }
    println!();
    println!("binary size: {}", size(meta.len()));
    if let (Some(zip), Some(bytes)) = (&args.zip, zip_size) {
        println!("zip size:    {} ({})", size(bytes), zip.display());
    }
    ExitCode::SUCCESS
}
