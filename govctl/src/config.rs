//! The config file `govctl login` writes, and how flags, environment and file combine.
//!
//! Precedence, highest first: a flag (`--server`, `--token`, `--ca-file`), its
//! environment variable (`GOVCTL_SERVER`, `GOVCTL_TOKEN`, `GOVCTL_CA_FILE`; clap merges
//! these two), then the config file. The file's token and CA belong to the file's
//! server: when another server is chosen by flag or environment they are not used, so
//! a token is never sent to a server it was not stored for.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Failure, exit};

/// What `govctl login` stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The API's URL, e.g. `https://127.0.0.1:18500`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The CA that signed the server's certificate (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where the config file lives: `$GOVCTL_CONFIG`, else
/// `$XDG_CONFIG_HOME/govctl/config.yaml`, else `~/.config/govctl/config.yaml`.
/// `env` looks a variable up (empty values count as unset).
pub fn config_path(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = var("GOVCTL_CONFIG") {
        return Some(path);
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Some(dir.join("govctl").join("config.yaml"));
    }
    var("HOME").map(|home| home.join(".config").join("govctl").join("config.yaml"))
}

/// The config file of this process's environment.
pub fn default_path() -> Result<PathBuf, Failure> {
    config_path(|name| std::env::var_os(name)).ok_or_else(|| {
        Failure::usage(
            "cannot tell where the config file is: set GOVCTL_CONFIG (or HOME or XDG_CONFIG_HOME)",
        )
    })
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config, Failure> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Failure::other(format!(
                    "reading the config file {}: {e}",
                    path.display()
                )));
            }
        };
        warn_if_readable_by_others(path);
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(&text).map_err(|e| {
            Failure::other(format!(
                "the config file {} is not valid ({e}): fix it, or delete it and run `govctl login` again",
                path.display()
            ))
        })
    }

    /// Writes the file at `path` with mode 0600 (its directory 0700 when created),
    /// replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), Failure> {
        let fail = |what: &str, e: std::io::Error| {
            Failure::other(format!("{what} {}: {e}", path.display()))
        };
        let text = serde_yaml::to_string(self)
            .map_err(|e| Failure::other(format!("encoding the config: {e}")))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            create_private_dir(dir).map_err(|e| fail("creating the directory of", e))?;
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut file = private_file(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail("writing the config file", e));
        }
        Ok(())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above is filtered by the umask and ignored for an existing file.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "govctl: warning: {} holds a token but others may read it (mode {mode:04o}): run chmod 600 on it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// What flags and environment say (clap has already merged each flag with its variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--server` / `GOVCTL_SERVER`.
    pub server: Option<String>,
    /// `--token` / `GOVCTL_TOKEN`.
    pub token: Option<String>,
    /// `--ca-file` / `GOVCTL_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

/// Where to connect and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API's URL.
    pub server: String,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// The CA file, if any (otherwise the system's roots).
    pub ca_file: Option<PathBuf>,
}

/// A URL as govctl stores and compares it: `https://` added when no scheme is given,
/// trailing slashes removed.
pub fn normalize_server(server: &str) -> String {
    let server = server.trim();
    let server = if server.contains("://") {
        server.to_owned()
    } else {
        format!("https://{server}")
    };
    server.trim_end_matches('/').to_owned()
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Combines flags and environment with the file (see the module documentation).
pub fn resolve(overrides: &Overrides, file: &Config) -> Result<Settings, Failure> {
    let file_server = non_empty(&file.server).map(normalize_server);
    let server = match non_empty(&overrides.server) {
        Some(server) => normalize_server(server),
        None => file_server.clone().ok_or_else(|| {
            Failure::usage(
                "no server configured: run `govctl login --server https://<api>` first, or pass \
                 --server (or set GOVCTL_SERVER)",
            )
        })?,
    };
    let same_server = file_server.as_deref() == Some(server.as_str());
    let token = non_empty(&overrides.token).map(str::to_owned).or_else(|| {
        same_server
            .then(|| non_empty(&file.token).map(str::to_owned))
            .flatten()
    });
    let ca_file = overrides
        .ca_file
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| same_server.then(|| file.ca_file.clone()).flatten());
    Ok(Settings {
        server,
        token,
        ca_file,
    })
}

impl Settings {
    /// The token, or the reason there is none (exit 3).
    pub fn require_token(&self) -> Result<&str, Failure> {
        self.token.as_deref().ok_or_else(|| {
            Failure::new(
                exit::UNAUTHENTICATED,
                format!(
                    "no token for {}: run `govctl login --server {} --token-file <file>` (or pass \
                     --token, or set GOVCTL_TOKEN)",
                    self.server, self.server
                ),
            )
        })
    }
}

/// Reads a token from `path` (`-` reads standard input), trimmed.
pub fn read_token_file(path: &Path) -> Result<String, Failure> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| Failure::other(format!("reading the token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn config_path_prefers_govctl_config_then_xdg_then_home() {
        let all = [
            ("GOVCTL_CONFIG", "/tmp/c.yaml"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/an"),
        ];
        assert_eq!(config_path(env(&all)), Some("/tmp/c.yaml".into()));
        assert_eq!(
            config_path(env(&all[1..])),
            Some("/xdg/govctl/config.yaml".into())
        );
        assert_eq!(
            config_path(env(&[("GOVCTL_CONFIG", ""), ("HOME", "/home/an")])),
            Some("/home/an/.config/govctl/config.yaml".into())
        );
        assert_eq!(config_path(env(&[])), None);
    }

    fn file() -> Config {
        Config {
            server: Some("https://api.gov.vn/".into()),
            token: Some("file-token".into()),
            ca_file: Some("/etc/govctl/ca.crt".into()),
        }
    }

    #[test]
    fn the_file_is_used_when_nothing_overrides_it() {
        let settings = resolve(&Overrides::default(), &file()).unwrap();
        assert_eq!(settings.server, "https://api.gov.vn");
        assert_eq!(settings.token.as_deref(), Some("file-token"));
        assert_eq!(settings.ca_file, Some("/etc/govctl/ca.crt".into()));
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let overrides = Overrides {
            server: None,
            token: Some("flag-token".into()),
            ca_file: Some("/tmp/other-ca.crt".into()),
        };
        let settings = resolve(&overrides, &file()).unwrap();
        assert_eq!(settings.server, "https://api.gov.vn");
        assert_eq!(settings.token.as_deref(), Some("flag-token"));
        assert_eq!(settings.ca_file, Some("/tmp/other-ca.crt".into()));
    }

    #[test]
    fn the_same_server_by_flag_keeps_the_files_token() {
        let overrides = Overrides {
            server: Some("api.gov.vn".into()),
            ..Overrides::default()
        };
        let settings = resolve(&overrides, &file()).unwrap();
        assert_eq!(settings.server, "https://api.gov.vn");
        assert_eq!(settings.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn another_server_never_gets_the_files_token_or_ca() {
        let overrides = Overrides {
            server: Some("https://127.0.0.1:18500".into()),
            ..Overrides::default()
        };
        let settings = resolve(&overrides, &file()).unwrap();
        assert_eq!(settings.server, "https://127.0.0.1:18500");
        assert_eq!(settings.token, None);
        assert_eq!(settings.ca_file, None);
        assert_eq!(
            settings.require_token().unwrap_err().code,
            exit::UNAUTHENTICATED
        );
    }

    #[test]
    fn no_server_anywhere_is_a_usage_error() {
        let err = resolve(&Overrides::default(), &Config::default()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("govctl login"), "{err}");
        // Empty values count as unset.
        let overrides = Overrides {
            server: Some(" ".into()),
            ..Overrides::default()
        };
        assert!(resolve(&overrides, &Config::default()).is_err());
    }

    #[test]
    fn saved_config_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("govctl-config-test-{}", std::process::id()));
        let path = dir.join("nested").join("config.yaml");
        let config = file();
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("caFile: /etc/govctl/ca.crt"), "{text}");
        assert_eq!(
            Config::load(&dir.join("missing.yaml")).unwrap(),
            Config::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
