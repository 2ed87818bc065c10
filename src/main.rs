//! The `keyledger` command-line tool: manage keys, verify them, and replay the audit trail.
//!
//! Everything lives in the `cli` module; this file only hands its exit code to the shell.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
