//! The one line an error becomes at the binary's edge.

use std::error::Error;

/// `error: cause: cause of the cause`, every cause once.
///
/// Like anyhow's `{:#}`, but a cause whose text already ends the line so far is not repeated:
/// many error types put their cause in their own message *and* return it from `source()`
/// (thiserror's `#[error("...: {0}")]` with `#[from]`), which `{:#}` prints twice
/// (`cannot read: Too many levels of symbolic links (os error 40): Too many levels of symbolic
/// links (os error 40)`).
pub fn error_text(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(&'static str, std::io::Error);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    /// ELOOP (40 on Linux).
    fn eloop() -> std::io::Error {
        std::io::Error::from_raw_os_error(40)
    }

    #[test]
    fn a_cause_in_the_message_is_not_repeated() {
        let e = anyhow::Error::new(Wrap("node.toml: cannot read", eloop()));
        let once = "node.toml: cannot read: Too many levels of symbolic links (os error 40)";
        assert_eq!(error_text(e.as_ref()), once);
        // What `{:#}` prints.
        assert_eq!(
            format!("{e:#}"),
            format!("{once}: Too many levels of symbolic links (os error 40)")
        );
        // Context added at the edge is kept, and the cause still appears once.
        let e = e.context("cannot start");
        assert_eq!(error_text(e.as_ref()), format!("cannot start: {once}"));
    }

    #[test]
    fn a_cause_not_in_the_message_is_added() {
        let e = anyhow::Error::new(eloop()).context("cannot create /x");
        assert_eq!(
            error_text(e.as_ref()),
            "cannot create /x: Too many levels of symbolic links (os error 40)"
        );
    }
}
