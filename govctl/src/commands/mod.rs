//! What each command does: connect, call, print.

pub mod agency;
pub mod app;
pub mod audit;
pub mod bill;
pub mod db;
pub mod login;
pub mod quota;

use std::future::Future;

use clap::CommandFactory as _;
use serde::Serialize;

use crate::cli::{Cli, Command, DEFAULT_LIMIT, Global, Paging};
use crate::config::{self, Config, Overrides};
use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, print};

/// The largest page the API serves.
pub const MAX_PAGE: u32 = 1000;

/// Runs the parsed command line. `token_on_command_line` tells a `--token` flag from
/// `GOVCTL_TOKEN` (clap merges them), which `govctl login` needs to refuse ambiguity.
pub async fn run(cli: Cli, token_on_command_line: bool) -> Result<(), Failure> {
    let format = cli.global.output;
    match cli.command {
        Command::Completion(args) => {
            let mut text = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "govctl", &mut text);
            crate::output::emit(&String::from_utf8_lossy(&text))
        }
        Command::Login(args) => login::run(&cli.global, &args, token_on_command_line).await,
        Command::Agency(command) => {
            agency::run(&connect(&cli.global).await?, command, format).await
        }
        Command::Quota(command) => quota::run(&connect(&cli.global).await?, command, format).await,
        Command::Audit(command) => audit::run(&connect(&cli.global).await?, command, format).await,
        Command::App(app::AppCommand::LogsHint(args)) => {
            crate::output::emit(&app::logs_hint(&args))
        }
        Command::App(command) => app::run(&connect(&cli.global).await?, command, format).await,
        Command::Db(command) => db::run(&connect(&cli.global).await?, command, format).await,
        Command::Bill(command) => bill::run(&connect(&cli.global).await?, command, format).await,
    }
}

/// What flags and environment say.
pub fn overrides(global: &Global) -> Overrides {
    Overrides {
        server: global.server.clone(),
        token: global.token.clone(),
        ca_file: global.ca_file.clone(),
    }
}

/// The config file's contents, or an empty config when no path can be found.
pub fn load_config() -> Result<Config, Failure> {
    match config::default_path() {
        Ok(path) => Config::load(&path),
        Err(_) => Ok(Config::default()),
    }
}

/// Connects with the settings of flags, environment and config file; a token is required.
pub async fn connect(global: &Global) -> Result<Connection, Failure> {
    let settings = config::resolve(&overrides(global), &load_config()?)?;
    settings.require_token()?;
    Connection::open(&settings).await
}

/// Items gathered from one or more pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered<T> {
    /// The items, in the server's order.
    pub items: Vec<T>,
    /// The token of the next page; empty when there is none.
    pub next_page_token: String,
}

/// Fetches pages with `fetch(page_size, page_token)` until `paging`'s limit is reached or
/// the server has no more.
pub async fn gather<T, F, Fut>(paging: Paging, mut fetch: F) -> Result<Gathered<T>, Failure>
where
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Failure>>,
{
    let limit = (!paging.all).then(|| paging.limit.unwrap_or(DEFAULT_LIMIT) as usize);
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page_size = match limit {
            Some(limit) => (limit - items.len()).min(MAX_PAGE as usize) as u32,
            None => MAX_PAGE,
        };
        let (page, next) = fetch(page_size, token.clone()).await?;
        items.extend(page);
        if !next.is_empty() && next == token {
            return Err(Failure::other(
                "the server returned the same page token twice; stopping instead of looping",
            ));
        }
        token = next;
        if token.is_empty() || limit.is_some_and(|limit| items.len() >= limit) {
            break;
        }
    }
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(Gathered {
        items,
        next_page_token: token,
    })
}

/// What a list command says on stderr under its table.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// How many items the table shows.
    pub count: usize,
    /// The next page's token; not empty when the list was cut at its limit.
    pub next_page_token: &'a str,
    /// What to say when nothing matched, e.g. `no agencies you may read match`.
    pub none: &'a str,
    /// What the items are called in the hint that more exist, e.g. `agencies`.
    pub what: &'a str,
}

/// Prints a list command's answer: the whole `response` as a document, or the table
/// `table` makes followed (on stderr) by what [`Listed`] says.
pub fn print_list<R: Serialize>(
    format: Format,
    response: &R,
    table: impl FnOnce() -> String,
    listed: Listed<'_>,
) -> Result<(), Failure> {
    print(format, response, table)?;
    if format == Format::Table {
        if listed.count == 0 {
            eprintln!("{}", listed.none);
        }
        more_hint(listed.what, listed.next_page_token);
    }
    Ok(())
}

/// Prints one object as [`print`] does and, under a table, `next` (on stderr): what a
/// person does next with what was just created or changed.
pub fn print_with_hint<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
    next: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    print(format, value, table)?;
    if format == Format::Table {
        eprintln!("{}", next(value));
    }
    Ok(())
}

/// Tells a person (on stderr) that a list was cut at its limit.
pub fn more_hint(what: &str, gathered_next: &str) {
    if !gathered_next.is_empty() {
        eprintln!("(more {what} exist: pass --all, or a larger --limit)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One page as a fake server answers it.
    type Page = std::future::Ready<Result<(Vec<u32>, String), Failure>>;

    /// A server with `total` items whose pages may come back short (as permission
    /// filtering does).
    fn server(total: u32, short: bool) -> impl FnMut(u32, String) -> Page {
        move |size, token| {
            let start: u32 = token.parse().unwrap_or(0);
            let size = if short { size.min(3) } else { size };
            let end = (start + size).min(total);
            let next = if end < total {
                end.to_string()
            } else {
                String::new()
            };
            std::future::ready(Ok(((start..end).collect(), next)))
        }
    }

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn limit_gathers_across_short_pages() {
        let paging = Paging {
            limit: Some(10),
            all: false,
        };
        let got = block(gather(paging, server(25, true))).unwrap();
        assert_eq!(got.items, (0..10).collect::<Vec<_>>());
        assert_eq!(got.next_page_token, "10");
    }

    #[test]
    fn all_gathers_everything_and_default_is_one_hundred() {
        let all = Paging {
            limit: None,
            all: true,
        };
        let got = block(gather(all, server(2500, false))).unwrap();
        assert_eq!(got.items.len(), 2500);
        assert!(got.next_page_token.is_empty());
        let got = block(gather(Paging::default(), server(250, false))).unwrap();
        assert_eq!(got.items.len(), 100);
    }

    #[test]
    fn a_repeated_token_stops_the_loop() {
        let paging = Paging {
            limit: None,
            all: true,
        };
        let stuck = |_, _| std::future::ready(Ok((vec![1], "same".to_owned())));
        assert!(block(gather(paging, stuck)).is_err());
    }
}
