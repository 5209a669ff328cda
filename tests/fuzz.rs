//! Fuzzing the parsers of everything that comes from outside spotswap, property-based on
//! stable Rust (proptest): setting values (flags, environment variables and group tags), the
//! swap protocol's group tags (which anyone with tag rights can edit), Auto Scaling's scaling
//! activities (a description and a cause, in words), EventBridge events,
//! Pricing API price list entries, cron schedules and glob lists. The property is that none
//! of them panics, whatever it is given; a panic fails the run with the smallest input proptest
//! shrinks it to, and the seed that replays the run.
//!
//! Inputs are mutations (characters inserted, deleted, replaced, spans repeated) of a corpus of
//! real inputs kept in `tests/fuzz/corpus/<target>/`, mutations of the JSON values of the JSON
//! corpora (a value anywhere replaced by another), and arbitrary strings. Add an input there
//! when a bug is found, so every later run starts from it.
//!
//! `make test` runs it for `FUZZ_SECONDS` (default 12) over all targets; `make fuzz` runs it
//! for 10 minutes and prints the figures. `FUZZ_SEED` replays a run.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use spotswap::cloud::activity;
use spotswap::cloud::aws::pricing::parse_entry;
use spotswap::glob;
use spotswap::protocol;
use spotswap::schedule::{Schedule, ScheduleState};
use spotswap::settings::{SETTINGS, Settings};

/// One parser under test: it takes text, and must not panic.
struct Target {
    name: &'static str,
    check: fn(&str),
    /// The corpus is JSON documents: mutate their values too.
    json: bool,
}

/// The built-in settings, made once.
fn defaults() -> &'static Settings {
    static DEFAULTS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(Settings::default)
}

fn settings_check(input: &str) {
    for d in SETTINGS {
        // A flag or environment variable...
        let _ = Settings::from_pairs([(d.stem, input)]);
        // ...and a group tag over valid global settings.
        if d.stem != "regions" {
            let tags = BTreeMap::from([
                ("spot-enabled".to_string(), "true".to_string()),
                (d.tag(), input.to_string()),
            ]);
            let _ = defaults().policy(&tags);
        }
    }
}

fn protocol_check(input: &str) {
    for key in [
        protocol::MAX_SIZE,
        protocol::LAUNCH_BACKOFF,
        protocol::INTERRUPTED,
        protocol::LEASE,
        protocol::SETTLED,
    ] {
        let tags = BTreeMap::from([(key.to_string(), input.to_string())]);
        let _ = protocol::max_size(&tags);
        let _ = protocol::launch_backoff(&tags);
        let _ = protocol::interruptions(&tags);
        let _ = protocol::lease(&tags);
        let _ = protocol::in_doubt(&tags, Utc::now());
        if let Ok(entries) = protocol::settled(&tags) {
            // What a pass writes back reads again, and fits a tag value.
            let v = protocol::settled_value(&entries, "i-0123456789abcdef0", "i-0123456789abcdef1");
            let again = BTreeMap::from([(protocol::SETTLED.to_string(), v.clone())]);
            assert!(protocol::settled(&again).is_ok(), "{v:?}");
            if entries.iter().all(|(c, m)| c.len() <= 19 && m.len() <= 19) {
                assert!(v.len() <= 256, "{v:?}");
            }
        }
    }
}

fn activity_check(input: &str) {
    let (description, cause) = input.split_once('\n').unwrap_or((input, input));
    for status in ["Successful", "InProgress", "Failed"] {
        if let Some(a) = activity::read(description, cause, status, Utc::now()) {
            // Only an instance the description names is ever read.
            assert!(
                a.instance_id.starts_with("i-") && description.contains(&a.instance_id),
                "{a:?}"
            );
        }
    }
}

fn event_check(input: &str) {
    if let Ok(v) = serde_json::from_str::<Value>(input) {
        let _ = spotswap::events::parse(&v);
    }
}

fn price_check(input: &str) {
    if let Some((_, price)) = parse_entry(input) {
        assert!(price.is_finite() && price > 0.0, "{price}");
    }
}

fn schedule_check(input: &str) {
    if let Ok(s) = Schedule::from_str(input) {
        let tz: chrono_tz::Tz = "Europe/London".parse().expect("a timezone");
        for t in [0, 1_700_000_000, 1_711_846_800, 4_102_444_800] {
            let now: DateTime<Utc> = Utc.timestamp_opt(t, 0).single().expect("a time");
            let _ = s.allows(now, tz, ScheduleState::On);
            let _ = s.allows(now, chrono_tz::UTC, ScheduleState::Off);
        }
        // What it prints parses again, to the same schedule.
        let again = Schedule::from_str(&s.to_string()).expect("its own text parses");
        assert_eq!(again.to_string(), s.to_string());
    }
}

fn glob_check(input: &str) {
    let (pattern, text) = input.split_once('\n').unwrap_or((input, input));
    let _ = glob::matches(pattern, text);
    for p in glob::split_list(input) {
        // A pattern always matches itself, once its wildcards are taken literally.
        if !p.contains(['*', '?']) {
            assert!(glob::matches(&p, &p), "{p:?}");
        }
    }
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "settings",
            check: settings_check,
            json: false,
        },
        Target {
            name: "protocol-tags",
            check: protocol_check,
            json: false,
        },
        Target {
            name: "scaling-activities",
            check: activity_check,
            json: false,
        },
        Target {
            name: "events",
            check: event_check,
            json: true,
        },
        Target {
            name: "price-list-entries",
            check: price_check,
            json: true,
        },
        Target {
            name: "schedules",
            check: schedule_check,
            json: false,
        },
        Target {
            name: "globs",
            check: glob_check,
            json: false,
        },
    ]
}

/// The corpus of a target: every file of its directory, whole.
fn corpus(target: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    let inputs: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a text corpus file"))
        .collect();
    assert!(!inputs.is_empty(), "{} has no corpus", dir.display());
    inputs
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Repeat(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Characters parsers care about, and any character at all.
    let ch = prop_oneof![
        3 => proptest::sample::select(vec![
            ' ', '=', ',', '*', '?', '-', '/', '@', '%', '.', ':', '"', '{', '}', '[', ']', '0',
            '9', 'T', 'Z', '\n', '\t', '\u{0}', '\u{301}', 'é', '𝄞',
        ]),
        1 => any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(base: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *e {
            Edit::Insert(i, c) => {
                let p = at(i, chars.len() + 1);
                chars.insert(p, c);
            }
            Edit::Delete(i) if !chars.is_empty() => {
                let p = at(i, chars.len());
                chars.remove(p);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let p = at(i, chars.len());
                chars[p] = c;
            }
            Edit::Repeat(i, n) if !chars.is_empty() => {
                let p = at(i, chars.len());
                let span: Vec<char> = chars[p..(p + n).min(chars.len())].to_vec();
                for (k, c) in span.into_iter().enumerate() {
                    chars.insert(p + k, c);
                }
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// A JSON value to put in place of another: scalars of every kind, odd numbers included.
fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        Just(Value::Object(serde_json::Map::new())),
    ]
}

/// Replaces the `k`-th value (in a depth-first walk) of `v` with `with`.
fn replace_nth(v: &mut Value, k: &mut usize, with: &Value) -> bool {
    if *k == 0 {
        *v = with.clone();
        return true;
    }
    *k -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|i| replace_nth(i, k, with)),
        Value::Object(map) => map.values_mut().any(|i| replace_nth(i, k, with)),
        _ => false,
    }
}

fn count_values(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(map) => map.values().map(count_values).sum(),
        _ => 0,
    }
}

fn inputs(corpus: Vec<String>, json: bool) -> BoxedStrategy<String> {
    let n = corpus.len();
    let texts = corpus.clone();
    let mutated = (0..n, proptest::collection::vec(edit(), 0..8))
        .prop_map(move |(i, edits)| apply(&texts[i], &edits));
    let arbitrary = any::<String>();
    if !json {
        return prop_oneof![4 => mutated, 1 => arbitrary].boxed();
    }
    let values: Vec<Value> = corpus
        .iter()
        .map(|t| serde_json::from_str(t).expect("a JSON corpus entry"))
        .collect();
    let structural = (0..n, any::<usize>(), json_scalar()).prop_map(move |(i, at, with)| {
        let mut v = values[i].clone();
        let mut k = at % count_values(&v);
        replace_nth(&mut v, &mut k, &with);
        v.to_string()
    });
    prop_oneof![3 => structural, 3 => mutated, 1 => arbitrary].boxed()
}

#[test]
fn no_parser_of_outside_input_panics() {
    let total = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        });
    let targets = targets();
    let per_target = Duration::from_secs_f64(total as f64 / targets.len() as f64);
    println!(
        "fuzzing {} targets for {total} s, FUZZ_SEED={seed}",
        targets.len()
    );
    let mut all = 0u64;
    for (k, t) in targets.iter().enumerate() {
        let corpus = corpus(t.name);
        // Every corpus entry as it is, first.
        for c in &corpus {
            (t.check)(c);
        }
        let strategy = inputs(corpus.clone(), t.json);
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8] = k as u8;
        let started = Instant::now();
        let cases = std::cell::Cell::new(0u64);
        for batch in 0u64.. {
            if started.elapsed() >= per_target {
                break;
            }
            bytes[16..24].copy_from_slice(&batch.to_le_bytes());
            let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
            // A fresh runner per batch (a runner counts its cases once), seeded from the run's
            // seed, the target and the batch.
            let mut runner = TestRunner::new_with_rng(
                Config {
                    cases: 512,
                    failure_persistence: None,
                    ..Config::default()
                },
                rng,
            );
            let check = t.check;
            if let Err(e) = runner.run(&strategy, |input| {
                cases.set(cases.get() + 1);
                check(&input);
                Ok(())
            }) {
                panic!("{}: {e} (replay with FUZZ_SEED={seed})", t.name);
            }
        }
        let cases = cases.get();
        all += cases;
        println!(
            "{:<20} {:>10} inputs in {:>6.1} s, {} corpus entries, 0 panics",
            t.name,
            cases,
            started.elapsed().as_secs_f64(),
            corpus.len()
        );
    }
    println!("all targets: {all} inputs, 0 panics");
}
