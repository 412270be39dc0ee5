//! `ferry`: the command line. It parses, wires and renders; the work lives in
//! `crates/ferry-engine`.
//!
//! # Layout
//! - `args`: the command-line interface (clap).
//! - `cmd/*`: one module per command, each turning arguments into engine calls and results
//!   into text or JSON.
//! - `progress`: progress bars on a terminal, periodic plain lines elsewhere.
//! - `out`: standard output that a closed pipe ends quietly (the crate's `println!`).
//!
//! Exit codes: 0 done (and verified), 1 some objects failed, 2 usage or configuration error,
//! 3 verification found differences.

#[macro_use]
mod out;
mod args;
mod cmd;
mod progress;

use clap::Parser;
use std::process::ExitCode;

/// What a command ended with, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failures = 1,
    Usage = 2,
    Differences = 3,
}

/// Large allocations (1 MiB and up) are mapped on their own and unmapped when freed. glibc
/// otherwise raises its mmap threshold after the first large free (up to 32 MiB), after which
/// part-sized buffers that miss the recycled pool (`ferry_core::buffers`) come from the heap
/// and fragment it: a 16 MiB budget copy peaked at 69 MiB instead of 42 MiB (issue 12, case 6).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = args::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match runtime.block_on(cmd::run(cli)) {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("ferry: error: {err}");
            if err.is_usage() { Exit::Usage } else { Exit::Failures }
        }
    };
    ExitCode::from(code as u8)
}
