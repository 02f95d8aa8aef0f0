//! The error type of the harness, the clients and the pricing reader.

use std::fmt;
use std::path::PathBuf;

/// A failure of the test support code. Its `Debug` output is its message, so that
/// `expect` in a test prints the log tail of a process that did not start as readable lines.
#[derive(thiserror::Error)]
pub enum Error {
    /// A file or program that the stack needs does not exist.
    #[error("{item} not found at {}: {hint}", path.display())]
    Missing {
        /// The file or program, such as "the Envoy binary".
        item: &'static str,
        path: PathBuf,
        hint: &'static str,
    },

    /// A process did not become ready before its deadline, or exited early.
    #[error("{process} did not start: {detail}\n--- last lines of {} ---\n{log_tail}", log.display())]
    NotStarted {
        /// Name of the process, such as "envoy".
        process: String,
        detail: String,
        log: PathBuf,
        log_tail: String,
    },

    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An HTTP request could not be sent or its body could not be read.
    #[error("{context}: {source}")]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },

    /// A server responded with a status the caller did not expect.
    #[error("{context}: status {status}, body {body}")]
    Status {
        context: String,
        status: u16,
        body: String,
    },

    /// A configuration file or a response body could not be parsed.
    #[error("{0}")]
    Invalid(String),
}

impl fmt::Debug for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an HTTP client error with what was being done.
    pub fn http(context: impl Into<String>, source: reqwest::Error) -> Error {
        Error::Http {
            context: context.into(),
            source,
        }
    }
}

/// Result of the test support code.
pub type Result<T> = std::result::Result<T, Error>;
