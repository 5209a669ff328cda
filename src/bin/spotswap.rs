//! The `spotswap` command line. All of it lives in the library ([`spotswap::cli`]); this file
//! only hands over control, so tests exercise exactly what users run.

fn main() -> std::process::ExitCode {
    spotswap::cli::main()
}
