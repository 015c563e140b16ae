//! Printing to standard output without panicking when the reader has gone away.
//!
//! `println!` panics when a write fails, and a reader that closes its end early
//! (`authz-harness replay tests/ | head`) makes every later write fail with `EPIPE`: the
//! harness would then die with a panic message in the middle of its output. The macros here
//! write the same text and, when the reader is gone, end the process quietly with the status
//! a command killed by `SIGPIPE` has (128 + 13), as command-line tools conventionally do.

use std::io::{ErrorKind, Write};

/// The exit status of a process ended by `SIGPIPE`.
pub const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Writes `args` (and a newline when `newline`) to standard output. A closed reader ends the
/// process with [`BROKEN_PIPE_STATUS`]; any other write error is reported on standard error
/// and ends it with status 1 (output that cannot be written must not look like success).
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = result {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        eprintln!("authz-harness: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends the process quietly when standard output's reader has gone away.
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*), true)
    };
}

/// `print!` that ends the process quietly when standard output's reader has gone away.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*), false)
    };
}
