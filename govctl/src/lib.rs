//! govctl: the command line of govbroker's provisioning API, for agency IT teams and
//! finance staff who do not use kubectl.
//!
//! It speaks gRPC (tonic, TLS) to `govbroker-api` with the generated clients of
//! [`govbroker_api::proto`], sends a bearer token on every call, and prints tables for
//! people or proto3 JSON / YAML for scripts. See `docs/govctl.md`.
//!
//! - [`cli`]: the commands and flags; [`commands`]: what each does;
//! - [`config`]: the config file and precedence; [`kubeconfig`]: tokens from kubeconfigs;
//! - [`connect`]: the channel and the token interceptor; [`output`]: tables, JSON, YAML;
//! - [`error`]: failures and the exit codes scripts rely on.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod connect;
pub mod error;
pub mod kubeconfig;
pub mod output;

pub use cli::Cli;
pub use commands::run;
pub use error::{Failure, exit};
