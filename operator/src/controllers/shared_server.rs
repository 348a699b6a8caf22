//! What the broker's controllers share to reach a shared data-service server: the class,
//! plan and admin credentials of a target, admin sessions on PostgreSQL and Redis, and
//! errors sorted into lasting mistakes (Failed) and passing trouble (Pending, retried).
//! Error texts carry the server's message, never a statement (which may hold a
//! password).

use std::collections::BTreeMap;
use std::time::Duration;

use govbroker_crds::{DataServiceClass, DataServiceEngine};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt as _};

use crate::Error;

/// What is percent-encoded in a URI's user, password and path: all but RFC 3986's
/// unreserved characters.
const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long the broker waits to connect to a shared server.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a claim could not be provisioned (or cleaned up) this time.
pub(crate) enum Problem {
    /// A lasting mistake in the claim or class: Failed until something changes.
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The server (or its admin Secret) cannot be used now: Pending, retried.
    Unavailable {
        reason: &'static str,
        message: String,
    },
}

/// The class, plan and admin credentials of a claim.
pub(crate) struct Target {
    pub(crate) class: DataServiceClass,
    pub(crate) max_connections: Option<u32>,
    admin_user: String,
    admin_password: String,
}

impl Target {
    pub(crate) fn host(&self) -> &str {
        &self.class.spec.server.host
    }

    pub(crate) fn port(&self) -> u16 {
        u16::try_from(self.class.spec.server.port).unwrap_or(0)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    pub(crate) fn unavailable(&self, error: &dyn std::fmt::Display) -> Problem {
        Problem::Unavailable {
            reason: "ServerUnavailable",
            message: format!(
                "the server of class \"{}\" at {} cannot be reached: {error}",
                self.class.name_any(),
                self.endpoint()
            ),
        }
    }
}

pub(crate) fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.is_empty())
}

/// The class `class_name` with plan `plan` (none: only the server is needed) and its
/// server's admin credentials, or why they cannot be used.
pub(crate) async fn target(
    client: &kube::Client,
    class_name: &str,
    plan: Option<&str>,
) -> Result<Result<Target, Problem>, Error> {
    let Some(class) = Api::<DataServiceClass>::all(client.clone())
        .get_opt(class_name)
        .await?
    else {
        return Ok(Err(Problem::Failed {
            reason: "ClassNotFound",
            message: format!("there is no DataServiceClass \"{class_name}\""),
        }));
    };
    let found = plan.and_then(|plan| class.spec.plans.iter().find(|p| p.name == plan));
    if let (Some(plan), None) = (plan, found) {
        let plans: Vec<&str> = class.spec.plans.iter().map(|p| p.name.as_str()).collect();
        return Ok(Err(Problem::Failed {
            reason: "PlanNotFound",
            message: format!(
                "DataServiceClass \"{class_name}\" has no plan \"{}\"; its plans are {}",
                plan,
                plans.join(", ")
            ),
        }));
    }
    if class.spec.server.tls.enabled {
        return Ok(Err(Problem::Failed {
            reason: "TlsNotSupported",
            message: format!(
                "DataServiceClass \"{class_name}\" asks for TLS to its server, which the broker does not support yet"
            ),
        }));
    }
    let max_connections = found
        .and_then(|p| p.limits.as_ref())
        .and_then(|l| l.max_connections)
        .and_then(|n| u32::try_from(n).ok());
    let secret_ref = &class.spec.server.admin_secret_ref;
    let secret = Api::<Secret>::namespaced(client.clone(), &secret_ref.namespace)
        .get_opt(&secret_ref.name)
        .await?;
    let credentials = secret
        .as_ref()
        .and_then(|s| Some((secret_text(s, "username")?, secret_text(s, "password")?)));
    let Some((admin_user, admin_password)) = credentials else {
        return Ok(Err(Problem::Unavailable {
            reason: "AdminSecretMissing",
            message: format!(
                "the admin Secret {}/{} of DataServiceClass \"{class_name}\" is missing or lacks the keys username and password",
                secret_ref.namespace, secret_ref.name
            ),
        }));
    };
    Ok(Ok(Target {
        class,
        max_connections,
        admin_user,
        admin_password,
    }))
}

pub(crate) fn new_password() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::DataService(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

// ---- PostgreSQL ----

/// An admin session on `database` of the target's server.
pub(crate) async fn postgres(
    target: &Target,
    database: &str,
) -> Result<tokio_postgres::Client, Problem> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(target.host())
        .port(target.port())
        .user(&target.admin_user)
        .password(&target.admin_password)
        .dbname(database)
        .application_name("govbroker-operator")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = match config.connect(tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(e) => return Err(target.unavailable(&pg_error(&e))),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute("SET standard_conforming_strings = on")
        .await
        .map_err(|e| target.unavailable(&pg_error(&e)))?;
    Ok(client)
}

/// A PostgreSQL error with its server message (never a statement, which may carry a
/// password).
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(e) {
                text = format!("{text}: {source}");
            }
            text
        }
    }
}

pub(crate) fn sql_failed(what: &str, e: &tokio_postgres::Error) -> Problem {
    if e.as_db_error().is_none() {
        return Problem::Unavailable {
            reason: "ServerUnavailable",
            message: format!("lost the server while {what}: {}", pg_error(e)),
        };
    }
    Problem::Failed {
        reason: "ProvisioningFailed",
        message: format!("{what}: {}", pg_error(e)),
    }
}

pub(crate) fn unsafe_text(e: &govbroker_domain::data_services::UnsafeText) -> Problem {
    Problem::Failed {
        reason: "InvalidName",
        message: e.to_string(),
    }
}

pub(crate) async fn exists(
    pg: &tokio_postgres::Client,
    query: &str,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(!pg.query(query, &[&name]).await?.is_empty())
}

pub(crate) const ROLE_EXISTS: &str = "SELECT 1 FROM pg_roles WHERE rolname = $1";
pub(crate) const DATABASE_EXISTS: &str = "SELECT 1 FROM pg_database WHERE datname = $1";

// ---- Redis ----

pub(crate) async fn redis(target: &Target) -> Result<redis::aio::MultiplexedConnection, Problem> {
    use redis::IntoConnectionInfo as _;
    let settings = redis::RedisConnectionInfo::default()
        .set_username(&target.admin_user)
        .set_password(&target.admin_password);
    let info = redis::ConnectionAddr::Tcp(target.host().to_owned(), target.port())
        .into_connection_info()
        .map_err(|e| target.unavailable(&e))?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(|e| target.unavailable(&e))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(target.unavailable(&e)),
        Err(_) => Err(target.unavailable(&format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

pub(crate) fn redis_failed(what: &str, e: &redis::RedisError) -> Problem {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
        return Problem::Unavailable {
            reason: "ServerUnavailable",
            message: format!("lost the server while {what}: {e}"),
        };
    }
    Problem::Failed {
        reason: "ProvisioningFailed",
        message: format!("{what}: {}", e.code().unwrap_or("error")),
    }
}

/// Consecutive failures per object, for a retry delay that grows: 2 s, 4 s, ... up to
/// 5 minutes, and starts again after a success.
pub(crate) struct Backoff<K: kube::Resource>(
    std::sync::Mutex<std::collections::HashMap<ObjectRef<K>, u32>>,
)
where
    K::DynamicType: Eq + std::hash::Hash + Clone;

impl<K: kube::Resource> Default for Backoff<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn default() -> Self {
        Backoff(std::sync::Mutex::new(std::collections::HashMap::new()))
    }
}

impl<K: kube::Resource<DynamicType = ()>> Backoff<K> {
    /// The delay before retrying `obj`, which failed once more.
    pub(crate) fn next(&self, obj: &K) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(ObjectRef::from_obj(obj)).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs((1u64 << (*n).min(9)).min(300))
    }

    /// Forgets the failures of `obj`, which succeeded.
    pub(crate) fn reset(&self, obj: &K) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(obj));
    }
}

/// The data of a binding Secret: `host`, `port`, `username`, `password`, `database`
/// (PostgreSQL) or `prefix` (Redis, without the `:`), and a `uri` with the user,
/// password and database percent-encoded.
pub(crate) fn binding_data(
    engine: DataServiceEngine,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    database_or_prefix: &str,
) -> BTreeMap<String, ByteString> {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED_KEPT).to_string();
    let mut data: BTreeMap<String, String> = BTreeMap::from([
        ("host".to_owned(), host.to_owned()),
        ("port".to_owned(), port.to_string()),
        ("username".to_owned(), user.to_owned()),
        ("password".to_owned(), password.to_owned()),
    ]);
    match engine {
        DataServiceEngine::Postgres => {
            data.insert("database".to_owned(), database_or_prefix.to_owned());
            data.insert(
                "uri".to_owned(),
                format!(
                    "postgresql://{}:{}@{host}:{port}/{}",
                    enc(user),
                    enc(password),
                    enc(database_or_prefix)
                ),
            );
        }
        DataServiceEngine::Redis => {
            data.insert("prefix".to_owned(), database_or_prefix.to_owned());
            data.insert(
                "uri".to_owned(),
                format!("redis://{}:{}@{host}:{port}", enc(user), enc(password)),
            );
        }
    }
    data.into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect()
}

/// The server's IP addresses, for the egress policy (a NetworkPolicy names addresses,
/// not host names).
pub(crate) async fn addresses(target: &Target) -> Result<Vec<std::net::IpAddr>, Problem> {
    if let Ok(ip) = target.host().parse::<std::net::IpAddr>() {
        return Ok(vec![ip]);
    }
    let mut found: Vec<std::net::IpAddr> = tokio::net::lookup_host((target.host(), target.port()))
        .await
        .map_err(|e| target.unavailable(&format!("cannot resolve its host name: {e}")))?
        .map(|a| a.ip())
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}
