//! The daemon's own entry point (`rr_daemon::cli::main`), built inside this package so that
//! the interop tests can run it as `CARGO_BIN_EXE_speaker` in the namespaces they create.

fn main() -> std::process::ExitCode {
    rr_daemon::cli::main()
}
