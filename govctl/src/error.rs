//! Failures, and the exit codes scripts can rely on.
//!
//! Every failure ends the program with `govctl: <message>` on stderr and one of the
//! codes in [`exit`]. Errors from the API keep the server's message (it already says
//! what to do); connection failures name the server and what to check.

use std::fmt;

/// The exit codes of govctl. They are part of its interface: scripts branch on them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error (a local file that cannot be read, an unexpected answer, a TLS
    /// certificate the CA does not vouch for, ...).
    pub const OTHER: u8 = 1;
    /// A usage error: a wrong flag or argument (clap's own code), or no server configured.
    pub const USAGE: u8 = 2;
    /// No token, or the server does not accept it: run `govctl login`.
    pub const UNAUTHENTICATED: u8 = 3;
    /// The caller is known but may not do this.
    pub const PERMISSION_DENIED: u8 = 4;
    /// The agency, quota request or other target does not exist.
    pub const NOT_FOUND: u8 = 5;
    /// The request is invalid, the system is not in a state to take it (e.g. the parent
    /// has no room left, the request was already decided), or the target already exists.
    pub const INVALID: u8 = 6;
    /// The server cannot be reached or is unavailable: retry later.
    pub const UNAVAILABLE: u8 = 7;
    /// `govctl audit verify` found the audit chain broken.
    pub const CHAIN_BROKEN: u8 = 8;
}

/// The text `govctl --help` and docs/govctl.md show for the exit codes.
pub const EXIT_CODES_HELP: &str = "\
EXIT CODES:
  0  success
  1  other error (local files, TLS certificate not trusted, unexpected answers)
  2  usage error (wrong flags or arguments, no server configured)
  3  unauthenticated: no token, or the server refused it (run `govctl login`)
  4  permission denied
  5  not found
  6  invalid argument, failed precondition (e.g. no room left) or already exists
  7  server unreachable or unavailable: retry later
  8  audit chain broken (`govctl audit verify`)";

/// The exit code for a gRPC status code.
pub fn code_for(code: tonic::Code) -> u8 {
    use tonic::Code;
    match code {
        Code::Ok => exit::OK,
        Code::Unauthenticated => exit::UNAUTHENTICATED,
        Code::PermissionDenied => exit::PERMISSION_DENIED,
        Code::NotFound => exit::NOT_FOUND,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange => exit::INVALID,
        Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
        Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => exit::OTHER,
    }
}

/// Why govctl stops: the message for stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of [`exit`].
    pub code: u8,
    /// What went wrong and what to do, without the `govctl: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    /// Any other error (exit 1).
    pub fn other(message: impl Into<String>) -> Failure {
        Failure::new(exit::OTHER, message)
    }

    /// The server at `server` answered a call with `status`.
    pub fn from_status(server: &str, status: &tonic::Status) -> Failure {
        let code = code_for(status.code());
        let mut message = status.message().trim().to_owned();
        if message.is_empty() {
            message = format!("the server answered {:?}", status.code());
        }
        if code == exit::UNAVAILABLE {
            let retry = status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|s| format!("retry in {s} s"))
                .unwrap_or_else(|| "retry in a moment".to_owned());
            message = format!(
                "the govbroker API at {server} is unavailable: {message}; {retry}, and if it \
                 persists check --server (or GOVCTL_SERVER, or run `govctl login` again)"
            );
        }
        Failure::new(code, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The message of `error` followed by its causes: `a: b: c`, repeated parts left out.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn grpc_codes_map_to_documented_exit_codes() {
        let cases = [
            (Code::Ok, 0),
            (Code::Unauthenticated, 3),
            (Code::PermissionDenied, 4),
            (Code::NotFound, 5),
            (Code::InvalidArgument, 6),
            (Code::FailedPrecondition, 6),
            (Code::AlreadyExists, 6),
            (Code::Unavailable, 7),
            (Code::DeadlineExceeded, 7),
            (Code::Internal, 1),
            (Code::Aborted, 1),
            (Code::Unknown, 1),
        ];
        for (code, exit) in cases {
            assert_eq!(code_for(code), exit, "{code:?}");
        }
    }

    #[test]
    fn every_exit_code_is_documented() {
        for code in 0..=8 {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code}  ")),
                "exit code {code} is not in the help"
            );
        }
    }

    #[test]
    fn server_messages_are_kept_and_unavailable_gets_a_retry_hint() {
        let denied = tonic::Status::permission_denied("bob may not get agencies \"x\"");
        let failure = Failure::from_status("https://api", &denied);
        assert_eq!(failure.code, exit::PERMISSION_DENIED);
        assert_eq!(failure.message, "bob may not get agencies \"x\"");

        let mut down = tonic::Status::unavailable("the ledger cannot be reached");
        down.metadata_mut()
            .insert("retry-after", "5".parse().expect("ascii"));
        let failure = Failure::from_status("https://api:1", &down);
        assert_eq!(failure.code, exit::UNAVAILABLE);
        assert!(failure.message.contains("https://api:1"), "{failure}");
        assert!(failure.message.contains("retry in 5 s"), "{failure}");
    }
}
