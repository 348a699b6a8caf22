//! `govctl login`: check the credentials with one cheap call, then store them.

use std::path::{Path, PathBuf};

use govbroker_api::proto;

use crate::cli::{Global, LoginArgs};
use crate::config::{self, Config, Settings};
use crate::connect::Connection;
use crate::error::{Failure, exit};
use crate::output::emit;

/// Where the token comes from.
fn token(
    global: &Global,
    args: &LoginArgs,
    token_on_command_line: bool,
) -> Result<String, Failure> {
    let from_file = args.token_file.is_some() || args.kubeconfig.is_some();
    if from_file && token_on_command_line {
        return Err(Failure::usage(
            "give the token one way: --token, --token-file or --kubeconfig",
        ));
    }
    if let Some(path) = &args.token_file {
        return config::read_token_file(path);
    }
    if let Some(path) = &args.kubeconfig {
        return crate::kubeconfig::token_from_file(path, args.context.as_deref());
    }
    global
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::usage(
                "no token: pass --token-file <file> (or '-' for standard input), --kubeconfig \
                 <file> [--context <name>], --token, or set GOVCTL_TOKEN",
            )
        })
}

fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path)
        .map_err(|e| Failure::other(format!("resolving {}: {e}", path.display())))
}

/// Runs `govctl login`.
pub async fn run(
    global: &Global,
    args: &LoginArgs,
    token_on_command_line: bool,
) -> Result<(), Failure> {
    let path = config::default_path()?;
    let stored = Config::load(&path)?;
    let token = token(global, args, token_on_command_line)?;
    let server = global
        .server
        .as_deref()
        .or(stored.server.as_deref())
        .map(config::normalize_server)
        .ok_or_else(|| {
            Failure::usage("no server: pass --server https://<api> (or set GOVCTL_SERVER)")
        })?;
    // A CA stored for this same server stays unless a new one is given.
    let ca_file = match &global.ca_file {
        Some(ca) => Some(absolute(ca)?),
        None if stored
            .server
            .as_deref()
            .map(config::normalize_server)
            .as_deref()
            == Some(server.as_str()) =>
        {
            stored.ca_file.clone()
        }
        None => None,
    };
    let settings = Settings {
        server: server.clone(),
        token: Some(token.clone()),
        ca_file: ca_file.clone(),
    };
    let connection = Connection::open(&settings).await?;
    let check = connection
        .agencies()
        .list_agencies(proto::ListAgenciesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await;
    let note = match check {
        Ok(_) => String::new(),
        // The server knew the caller and judged their rights: the token is valid.
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            " (the token is valid, but it may not list agencies)".to_owned()
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            return Err(Failure::new(
                exit::UNAUTHENTICATED,
                format!(
                    "{server} refused the token: {}; nothing was stored",
                    status.message()
                ),
            ));
        }
        Err(status) => return Err(connection.fail(status)),
    };
    Config {
        server: Some(server.clone()),
        token: Some(token),
        ca_file,
    }
    .save(&path)?;
    emit(&format!(
        "logged in to {server}{note}; credentials stored in {}\n",
        path.display()
    ))
}
