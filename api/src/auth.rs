//! Who the caller is and what they may do, decided by Kubernetes.
//!
//! A bearer token is checked with a TokenReview; the caller then acts through an
//! impersonating client (so RBAC and the admission webhook see the real user), and
//! reads served from the API's cache are checked with a SubjectAccessReview. Both answers
//! are cached briefly: a token for [`TOKEN_TTL`] (keyed by its SHA-256, never the token
//! itself), an authorization decision for [`DECISION_TTL`] (keyed by the whole identity:
//! user, uid, groups and extra). A revoked permission therefore takes effect within
//! seconds, and no cache entry can serve one identity's answer to another.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// How long an accepted token is trusted without asking Kubernetes again.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);
/// How long an authorization decision is reused.
pub const DECISION_TTL: Duration = Duration::from_secs(5);
/// Bound on each cache; beyond it, expired entries are dropped (and if none are, all).
const CACHE_LIMIT: usize = 50_000;

/// The token of an `Authorization: Bearer <token>` header value (gRPC metadata or HTTP).
pub fn bearer_token(header: &str) -> Option<String> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// An authenticated caller, as Kubernetes knows them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// The user's uid, if the authenticator gives one.
    pub uid: String,
    /// The groups.
    pub groups: Vec<String>,
    /// Extra attributes of the authenticator.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What is being asked of Kubernetes' authorizer, in the `govbroker.io` group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    /// `get`, `list`, `create`...
    pub verb: &'static str,
    /// `agencies`, `quotarequests`...
    pub resource: &'static str,
    /// A (possibly virtual) subresource, e.g. `audit`.
    pub subresource: Option<&'static str>,
    /// One object's name, or none for all.
    pub name: Option<String>,
    /// The namespace of a namespaced resource, or none for cluster scope.
    pub namespace: Option<String>,
}

impl Permission {
    /// `verb` on `resource` (all objects).
    pub fn all(verb: &'static str, resource: &'static str) -> Permission {
        Permission {
            verb,
            resource,
            subresource: None,
            name: None,
            namespace: None,
        }
    }

    /// `verb` on one named object.
    pub fn on(verb: &'static str, resource: &'static str, name: &str) -> Permission {
        Permission {
            name: Some(name.to_owned()),
            ..Permission::all(verb, resource)
        }
    }

    /// The same, on a subresource.
    pub fn with_subresource(mut self, subresource: &'static str) -> Permission {
        self.subresource = Some(subresource);
        self
    }

    /// The same, in one namespace (for namespaced resources).
    pub fn in_namespace(mut self, namespace: &str) -> Permission {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// How RBAC would name it, e.g. `get agencies/audit "so-y-te"`.
    pub fn describe(&self) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_owned(),
        };
        let text = match &self.name {
            Some(name) => format!("{} {resource} \"{name}\"", self.verb),
            None => format!("{} {resource} (all)", self.verb),
        };
        match &self.namespace {
            Some(namespace) => format!("{text} in namespace \"{namespace}\""),
            None => text,
        }
    }
}

/// A small map whose entries expire.
struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_LIMIT {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= CACHE_LIMIT {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }
}

/// Authenticates callers and asks Kubernetes what they may do.
pub struct Identity {
    /// The API's own client (TokenReview, SubjectAccessReview, the caches' watches).
    client: Client,
    /// The API's own configuration, the base of impersonating clients.
    config: kube::Config,
    tokens: TtlCache<[u8; 32], Caller>,
    decisions: TtlCache<(Caller, Permission), bool>,
    clients: TtlCache<Caller, Client>,
    /// Audiences asked for in TokenReviews (empty: the API server's own).
    audiences: Vec<String>,
}

impl Identity {
    /// An identity service over the API's own client and configuration.
    pub fn new(client: Client, config: kube::Config, audiences: Vec<String>) -> Identity {
        Identity {
            client,
            config,
            tokens: TtlCache::new(TOKEN_TTL),
            decisions: TtlCache::new(DECISION_TTL),
            clients: TtlCache::new(Duration::from_secs(300)),
            audiences,
        }
    }

    /// Who presents `bearer` (the token, without `Bearer `).
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, ApiError> {
        let Some(token) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ApiError::Unauthenticated(
                "no bearer token: send the header 'authorization: Bearer <token>' (govctl login stores one)".to_owned(),
            ));
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(caller) = self.tokens.get(&key) {
            return Ok(caller);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 403 => ApiError::Internal(
                    "the API's service account may not create TokenReviews: install the chart's govbroker-api ClusterRole".to_owned(),
                ),
                other => ApiError::unavailable(format!("cannot check the token with Kubernetes: {other}")),
            })?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        if status.authenticated != Some(true) || user.username.is_none() {
            return Err(ApiError::Unauthenticated(
                "the token is not valid (unknown, expired or revoked): log in again with govctl login".to_owned(),
            ));
        }
        let caller = Caller {
            user: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default().into_iter().collect(),
        };
        self.tokens.put(key, caller.clone());
        Ok(caller)
    }

    /// Whether `caller` holds `permission`, by a SubjectAccessReview (cached briefly).
    pub async fn can(&self, caller: &Caller, permission: &Permission) -> Result<bool, ApiError> {
        let key = (caller.clone(), permission.clone());
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.user.clone()),
                uid: (!caller.uid.is_empty()).then(|| caller.uid.clone()),
                groups: Some(caller.groups.clone()),
                extra: (!caller.extra.is_empty())
                    .then(|| caller.extra.clone().into_iter().collect()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(govbroker_crds::GROUP.to_owned()),
                    resource: Some(permission.resource.to_owned()),
                    subresource: permission.subresource.map(str::to_owned),
                    name: permission.name.clone(),
                    namespace: permission.namespace.clone(),
                    verb: Some(permission.verb.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 403 => ApiError::Internal(
                    "the API's service account may not create SubjectAccessReviews: install the chart's govbroker-api ClusterRole".to_owned(),
                ),
                other => ApiError::unavailable(format!("cannot ask Kubernetes for a decision: {other}")),
            })?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.decisions.put(key, allowed);
        Ok(allowed)
    }

    /// Ok if `caller` holds `permission`, else a denial that names it.
    pub async fn require(&self, caller: &Caller, permission: &Permission) -> Result<(), ApiError> {
        if self.can(caller, permission).await? {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "{} may not {} (group govbroker.io): ask a platform admin or the agency's owners for access",
                caller.user,
                permission.describe()
            )))
        }
    }

    /// A Kubernetes client that acts as `caller` (impersonation), so RBAC and the
    /// admission webhook judge the caller, not the API.
    pub fn client_for(&self, caller: &Caller) -> Result<Client, ApiError> {
        if let Some(client) = self.clients.get(caller) {
            return Ok(client);
        }
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(caller.user.clone());
        config.auth_info.impersonate_groups = Some(caller.groups.clone());
        if !caller.uid.is_empty() || !caller.extra.is_empty() {
            // kube's config has no fields for these; they go as headers.
            let mut headers = Vec::new();
            if !caller.uid.is_empty() {
                headers.push(("Impersonate-Uid".to_owned(), caller.uid.clone()));
            }
            for (key, values) in &caller.extra {
                for value in values {
                    headers.push((format!("Impersonate-Extra-{key}"), value.clone()));
                }
            }
            config.headers.extend(
                headers
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?))),
            );
        }
        let client = Client::try_from(config).map_err(|e| {
            ApiError::Internal(format!("building a client for {}: {e}", caller.user))
        })?;
        self.clients.put(caller.clone(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_taken_from_the_header() {
        assert_eq!(bearer_token("Bearer gbt_x").as_deref(), Some("gbt_x"));
        assert_eq!(bearer_token("bearer  gbt_x ").as_deref(), Some("gbt_x"));
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("gbt_x"), None);
    }

    #[test]
    fn permissions_read_like_rbac() {
        assert_eq!(
            Permission::on("get", "agencies", "so-y-te")
                .with_subresource("audit")
                .describe(),
            "get agencies/audit \"so-y-te\""
        );
        assert_eq!(
            Permission::all("list", "agencies").describe(),
            "list agencies (all)"
        );
    }

    #[test]
    fn cache_entries_expire_and_stay_per_key() {
        let cache = TtlCache::new(Duration::from_millis(0));
        cache.put(1, "a");
        assert_eq!(cache.get(&1), None, "a zero TTL keeps nothing");
        let cache = TtlCache::new(Duration::from_secs(60));
        cache.put(1, "a");
        assert_eq!(cache.get(&1), Some("a"));
        assert_eq!(cache.get(&2), None);
    }
}
