//! The bearer token of a kubeconfig context's user, for `govctl login --kubeconfig`.
//!
//! Only what govctl needs is read: the context's user and its `token` or `tokenFile`
//! (a relative `tokenFile` is relative to the kubeconfig, as kubectl reads it). The
//! token itself never appears in a message.

use std::path::Path;

use serde::Deserialize;

use crate::error::Failure;

#[derive(Debug, Default, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<ContextSpec>,
}

#[derive(Debug, Deserialize)]
struct ContextSpec {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<UserSpec>,
}

#[derive(Debug, Deserialize)]
struct UserSpec {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<String>,
}

/// The bearer token of `context` (or the current context) in the kubeconfig at `path`.
pub fn token_from_file(path: &Path, context: Option<&str>) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::other(format!("reading the kubeconfig {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    bearer_token(&text, base, context)
        .map_err(|message| Failure::other(format!("kubeconfig {}: {message}", path.display())))
}

/// The bearer token of `context` (or the current context) in kubeconfig `text`; a
/// relative `tokenFile` is read from `base`.
pub fn bearer_token(text: &str, base: &Path, context: Option<&str>) -> Result<String, String> {
    let config: Kubeconfig =
        serde_yaml::from_str(text).map_err(|e| format!("not a valid kubeconfig: {e}"))?;
    let context_name = match context {
        Some(name) => name.to_owned(),
        None => config
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or("it has no current-context: pass --context <name>")?,
    };
    let known = || {
        let names: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            "it has no contexts".to_owned()
        } else {
            format!("its contexts are {}", names.join(", "))
        }
    };
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| format!("no context {context_name:?}: {}", known()))?;
    let user_name = ctx
        .context
        .as_ref()
        .and_then(|c| c.user.clone())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("context {context_name:?} names no user"))?;
    let user = config
        .users
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.user.as_ref())
        .ok_or_else(|| {
            format!("context {context_name:?} names user {user_name:?}, which it does not define")
        })?;
    if let Some(token) = user
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(token.to_owned());
    }
    if let Some(file) = user.token_file.as_deref().filter(|f| !f.is_empty()) {
        let path = base.join(file);
        let token = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "reading tokenFile {} of user {user_name:?}: {e}",
                path.display()
            )
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!(
                "tokenFile {} of user {user_name:?} is empty",
                path.display()
            ));
        }
        return Ok(token.to_owned());
    }
    Err(format!(
        "user {user_name:?} of context {context_name:?} has no bearer token (token or tokenFile); \
         govctl needs a token: pass --token-file or --token instead"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: so-y-te
clusters:
  - name: local
    cluster: {server: "https://127.0.0.1:6443"}
contexts:
  - name: so-y-te
    context: {cluster: local, user: an}
  - name: from-file
    context: {cluster: local, user: binh}
  - name: certs
    context: {cluster: local, user: admin}
users:
  - name: an
    user: {token: "gbt_an"}
  - name: binh
    user: {tokenFile: "binh.token"}
  - name: admin
    user: {client-certificate-data: "AAAA", client-key-data: "BBBB"}
"#;

    #[test]
    fn current_context_token() {
        assert_eq!(
            bearer_token(KUBECONFIG, Path::new("/nonexistent"), None).unwrap(),
            "gbt_an"
        );
    }

    #[test]
    fn token_file_is_relative_to_the_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("govctl-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("binh.token"), "gbt_binh\n").unwrap();
        assert_eq!(
            bearer_token(KUBECONFIG, &dir, Some("from-file")).unwrap(),
            "gbt_binh"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_context_and_never_a_token() {
        let err = bearer_token(KUBECONFIG, Path::new("."), Some("certs")).unwrap_err();
        assert!(err.contains("has no bearer token"), "{err}");
        let err = bearer_token(KUBECONFIG, Path::new("."), Some("nope")).unwrap_err();
        assert!(err.contains("so-y-te, from-file, certs"), "{err}");
        assert!(!err.contains("gbt_"), "{err}");
        let err = bearer_token("contexts: []", Path::new("."), None).unwrap_err();
        assert!(err.contains("--context"), "{err}");
    }
}
