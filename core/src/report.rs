//! How Cadenza's programs print a failure: the error, then each cause on
//! its own line. Every `main` (cadenza, cadenza-train, cadenza-export,
//! cargo xtask) prints through [`report_error`], so they read alike.

use std::error::Error;
use std::fmt::Write;

/// `error: <e>` and one `  caused by: <cause>` line per source, each line
/// ending in a newline; print it to stderr and exit non-zero.
pub fn report_error(e: &(dyn Error + 'static)) -> String {
    let mut out = format!("error: {e}\n");
    let mut cause = e.source();
    while let Some(c) = cause {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "  caused by: {c}");
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("training jazz into runs/jazz")]
    struct Outer(#[source] std::io::Error);

    /// Each cause gets its own line, outermost first.
    #[test]
    fn the_report_lists_every_cause_in_order() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "data/jazz: no such folder"));
        assert_eq!(report_error(&e), "error: training jazz into runs/jazz\n  caused by: data/jazz: no such folder\n");
        let alone = std::io::Error::other("no data");
        assert_eq!(report_error(&alone), "error: no data\n");
    }
}
