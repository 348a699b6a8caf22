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
    /// TLS towards the server, when the class asks for it.
    pub(crate) tls: Option<ServerTls>,
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
    let tls = if class.spec.server.tls.enabled {
        match server_tls(client, &class).await? {
            Ok(tls) => Some(tls),
            Err(problem) => return Ok(Err(problem)),
        }
    } else {
        None
    };
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
        tls,
    }))
}

/// How the broker checks a server's certificate: against the CA of the class's
/// `tls.caSecretRef` (key `ca.crt`), or the system's trusted roots.
pub(crate) struct ServerTls {
    /// The rustls configuration (ring), verifying the server's name.
    pub(crate) config: rustls::ClientConfig,
    /// The CA certificate (PEM) from the class, handed on in binding Secrets.
    pub(crate) ca_pem: Option<String>,
}

async fn server_tls(
    client: &kube::Client,
    class: &DataServiceClass,
) -> Result<Result<ServerTls, Problem>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let class_name = class.name_any();
    let mut roots = rustls::RootCertStore::empty();
    let mut ca_pem = None;
    if let Some(secret_ref) = &class.spec.server.tls.ca_secret_ref {
        let secret = Api::<Secret>::namespaced(client.clone(), &secret_ref.namespace)
            .get_opt(&secret_ref.name)
            .await?;
        let Some(pem) = secret.as_ref().and_then(|s| secret_text(s, "ca.crt")) else {
            return Ok(Err(Problem::Unavailable {
                reason: "CaSecretMissing",
                message: format!(
                    "the CA Secret {}/{} of DataServiceClass \"{class_name}\" is missing or lacks the key ca.crt",
                    secret_ref.namespace, secret_ref.name
                ),
            }));
        };
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let added = cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
            if let Err(e) = added {
                return Ok(Err(Problem::Failed {
                    reason: "InvalidCa",
                    message: format!(
                        "ca.crt of Secret {}/{} (DataServiceClass \"{class_name}\") is not a PEM certificate: {e}",
                        secret_ref.namespace, secret_ref.name
                    ),
                }));
            }
        }
        ca_pem = Some(pem);
    } else {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if roots.is_empty() {
        return Ok(Err(Problem::Failed {
            reason: "InvalidCa",
            message: format!(
                "no CA certificate to check the server of DataServiceClass \"{class_name}\" against: set spec.server.tls.caSecretRef"
            ),
        }));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::DataService(format!("TLS configuration: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Ok(ServerTls { config, ca_pem }))
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
    let client = match &target.tls {
        Some(tls) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.config.clone());
            let (client, connection) = config
                .connect(connector)
                .await
                .map_err(|e| target.unavailable(&pg_error(&e)))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        None => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| target.unavailable(&pg_error(&e)))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
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
    let (host, port) = (target.host().to_owned(), target.port());
    let addr = match &target.tls {
        Some(_) => redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        None => redis::ConnectionAddr::Tcp(host, port),
    };
    let info = addr
        .into_connection_info()
        .map_err(|e| target.unavailable(&e))?
        .set_redis_settings(settings);
    let client = match &target.tls {
        // The class's CA, or the system's trusted roots.
        Some(tls) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: tls.ca_pem.clone().map(String::into_bytes),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(|e| target.unavailable(&e))?;
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
/// password and database percent-encoded. With TLS, also `sslmode` (`verify-full`, in
/// the URI too) and the class's CA as `ca.crt` when it names one.
pub(crate) fn binding_data(
    engine: DataServiceEngine,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    database_or_prefix: &str,
    tls: Option<&ServerTls>,
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
                    "postgresql://{}:{}@{host}:{port}/{}{}",
                    enc(user),
                    enc(password),
                    enc(database_or_prefix),
                    if tls.is_some() {
                        "?sslmode=verify-full"
                    } else {
                        ""
                    }
                ),
            );
            if tls.is_some() {
                data.insert("sslmode".to_owned(), "verify-full".to_owned());
            }
        }
        DataServiceEngine::Redis => {
            data.insert("prefix".to_owned(), database_or_prefix.to_owned());
            data.insert(
                "uri".to_owned(),
                format!(
                    "{}://{}:{}@{host}:{port}",
                    if tls.is_some() { "rediss" } else { "redis" },
                    enc(user),
                    enc(password)
                ),
            );
        }
    }
    if let Some(ca) = tls.and_then(|t| t.ca_pem.as_ref()) {
        data.insert("ca.crt".to_owned(), ca.clone());
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
