//! Standard output that a closed pipe ends quietly (`ferry status | head -1`), as `rg` and
//! `ls` do, instead of the panic (exit 101) of `std`'s `println!`. SIGPIPE stays ignored: a
//! network write to a dropped connection must fail as an error, never kill ferry.
//!
//! `println!` in this crate is this module's (a `macro_rules!` declared before the modules that
//! use it shadows the prelude's).

use std::io::Write;

/// Writes one line to standard output. A reader that went away ends the process with exit 0:
/// the work is journaled as it goes, so nothing is lost with the rest of the output; any other
/// write error ends it with exit 1, said on stderr.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("ferry: error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

macro_rules! println {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
