//! `rr-daemon`: see `rr-daemon --help`.

fn main() -> std::process::ExitCode {
    rr_daemon::cli::main()
}
