//! The docs stay true: the README's settings reference is the one the code generates, and the
//! decision core's modules import nothing that could do I/O, read the clock or log.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn the_readme_settings_reference_is_the_generated_one() {
    let readme = read("README.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(["settings", "--output", "markdown"])
        .output()
        .expect("the spotswap binary runs");
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        readme.contains(&table),
        "README.md's settings table is stale: regenerate it with \
         `cargo run -q --bin spotswap -- settings --output markdown`"
    );
}

#[test]
fn the_decision_core_has_no_io_no_clock_and_no_logging() {
    // Tokens that would let a module reach outside its arguments.
    let forbidden = [
        "std::fs",
        "std::net",
        "std::io",
        "std::env",
        "std::time",
        "std::process",
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant",
        "println!",
        "eprintln!",
        "print!",
        "dbg!",
        "tracing",
        "log::",
        "tokio",
        "aws_sdk",
        "rand::",
    ];
    let mut modules: Vec<String> = [
        "src/compat.rs",
        "src/settings.rs",
        "src/schedule.rs",
        "src/glob.rs",
        "src/like.rs",
        "src/model.rs",
        "src/pricing.rs",
        "src/protocol.rs",
        "src/savings.rs",
    ]
    .map(String::from)
    .to_vec();
    // Every stage of the planner.
    let plan_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan");
    for entry in std::fs::read_dir(&plan_dir).expect("src/plan exists") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        modules.push(format!("src/plan/{name}"));
    }
    assert!(
        modules.len() > 14,
        "the planner's stages are listed: {modules:?}"
    );
    for module in &modules {
        let text = read(module);
        // Only the module's own code, not its unit tests.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for token in forbidden {
            assert!(
                !mentions(code, token),
                "{module} mentions {token:?}: the decision core must stay pure"
            );
        }
    }
}

/// Whether `code` has `token` starting at a word boundary (so `catalog::` is not `log::`).
fn mentions(code: &str, token: &str) -> bool {
    code.match_indices(token).any(|(i, _)| {
        code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// The stack's `DryRun` defaults to `false` (a deployed function acts), so the first deploy the
/// README and the deploy guide show starts with `DryRun=true`: a new operator reads a few
/// passes' plans before anything changes.
#[test]
fn the_first_deploy_shown_plans_only() {
    for (file, marker) in [
        ("README.md", "make deploy"),
        ("docs/deploy.md", "aws cloudformation deploy"),
    ] {
        let text = read(file).replace("\\\n", " ");
        let first = text
            .lines()
            .find(|l| l.trim_start().starts_with(marker))
            .unwrap_or_else(|| panic!("{file} shows a deploy"));
        assert!(
            first.contains("DryRun=true"),
            "{file}: the first deploy goes live: {first}"
        );
    }
}
