//! The connection to the API: a tonic channel (TLS unless the URL says `http://`) and an
//! interceptor that sends the bearer token on every call.

use std::time::Duration;

use govbroker_api::proto::agencies_client::AgenciesClient;
use govbroker_api::proto::audit_client::AuditClient;
use govbroker_api::proto::billing_client::BillingClient;
use govbroker_api::proto::data_services_client::DataServicesClient;
use govbroker_api::proto::quota_requests_client::QuotaRequestsClient;
use govbroker_api::proto::workloads_client::WorkloadsClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::Settings;
use crate::error::{Failure, chain, exit};

/// How long to wait for the TCP and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The interceptor for `token` (none sends no header).
    pub fn new(token: Option<&str>) -> Result<Bearer, Failure> {
        token
            .map(|t| {
                format!("Bearer {t}").parse().map_err(|_| {
                    Failure::usage(
                        "the token holds characters that cannot be sent in a header (it must be \
                         printable ASCII): check the token you gave",
                    )
                })
            })
            .transpose()
            .map(Bearer)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(if self.0.is_some() {
            "Bearer(<token>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel with the interceptor.
pub type Authed = InterceptedService<Channel, Bearer>;

/// An open connection to one server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The server's URL, for messages.
    pub server: String,
    channel: Channel,
    bearer: Bearer,
}

/// The host of `url` without IPv6 brackets, for TLS server-name checks.
pub fn host_of(uri: &tonic::codegen::http::Uri) -> Option<String> {
    let host = uri.host()?;
    Some(
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned(),
    )
}

/// The endpoint for `settings` (TLS configured), without connecting.
pub fn endpoint(settings: &Settings) -> Result<Endpoint, Failure> {
    let bad_url = |why: String| {
        Failure::usage(format!(
            "the server URL {:?} is not usable: {why}; give one like https://api.example.gov.vn:443",
            settings.server
        ))
    };
    let endpoint = Endpoint::from_shared(settings.server.clone())
        .map_err(|e| bad_url(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let uri = endpoint.uri().clone();
    match uri.scheme_str() {
        Some("https") => {
            let host = host_of(&uri).ok_or_else(|| bad_url("it has no host".into()))?;
            let mut tls = ClientTlsConfig::new().domain_name(host);
            tls = match &settings.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        Failure::other(format!("reading the CA file {}: {e}", path.display()))
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_native_roots(),
            };
            endpoint
                .tls_config(tls)
                .map_err(|e| Failure::other(format!("configuring TLS: {}", chain(&e))))
        }
        Some("http") => Ok(endpoint),
        other => Err(bad_url(format!(
            "the scheme is {:?}, not https",
            other.unwrap_or_default()
        ))),
    }
}

/// Explains a failed connection to `server`: which server, why, and what to check.
pub fn connect_failure(server: &str, error: &(dyn std::error::Error + 'static)) -> Failure {
    let detail = chain(error);
    let lower = detail.to_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        return Failure::new(
            exit::OTHER,
            format!(
                "cannot connect securely to the govbroker API at {server}: {detail}; pass the CA \
                 that signed the server's certificate with --ca-file (or `govctl login --ca-file`), \
                 and check --server"
            ),
        );
    }
    Failure::new(
        exit::UNAVAILABLE,
        format!(
            "cannot reach the govbroker API at {server}: {detail}; check that --server (or \
             GOVCTL_SERVER, or the server `govctl login` stored) is right and the server runs, \
             then retry"
        ),
    )
}

impl Connection {
    /// Connects to the server of `settings`, sending its token (if any) on every call.
    pub async fn open(settings: &Settings) -> Result<Connection, Failure> {
        let bearer = Bearer::new(settings.token.as_deref())?;
        let channel = endpoint(settings)?
            .connect()
            .await
            .map_err(|e| connect_failure(&settings.server, &e))?;
        Ok(Connection {
            server: settings.server.clone(),
            channel,
            bearer,
        })
    }

    /// The Agencies service.
    pub fn agencies(&self) -> AgenciesClient<Authed> {
        AgenciesClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The QuotaRequests service.
    pub fn quota_requests(&self) -> QuotaRequestsClient<Authed> {
        QuotaRequestsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The Audit service.
    pub fn audit(&self) -> AuditClient<Authed> {
        AuditClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The Billing service.
    pub fn billing(&self) -> BillingClient<Authed> {
        BillingClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The DataServices service.
    pub fn data_services(&self) -> DataServicesClient<Authed> {
        DataServicesClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The Workloads service.
    pub fn workloads(&self) -> WorkloadsClient<Authed> {
        WorkloadsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// What a unary call answered, or the failure its error status means (see
    /// [`Connection::fail`]): the one place a command turns a call into a result.
    pub async fn answer<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Failure> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(s))
    }

    /// The failure for a call's error status.
    pub fn fail(&self, status: tonic::Status) -> Failure {
        // A call on a connection that broke meanwhile comes back as a transport error.
        if status.code() == tonic::Code::Unavailable
            && let Some(source) = std::error::Error::source(&status)
        {
            return connect_failure(&self.server, source);
        }
        Failure::from_status(&self.server, &status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(server: &str) -> Settings {
        Settings {
            server: server.to_owned(),
            token: None,
            ca_file: None,
        }
    }

    #[test]
    fn bearer_sets_the_header_and_hides_the_token() {
        let mut bearer = Bearer::new(Some("gbt_secret")).unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer gbt_secret"
        );
        assert!(!format!("{bearer:?}").contains("secret"));
        let mut none = Bearer::new(None).unwrap();
        assert!(
            none.call(tonic::Request::new(()))
                .unwrap()
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert_eq!(
            Bearer::new(Some("bad\ntoken")).unwrap_err().code,
            exit::USAGE
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(endpoint(&settings("https://127.0.0.1:18500")).is_ok());
        assert!(endpoint(&settings("http://127.0.0.1:18500")).is_ok());
        assert_eq!(
            endpoint(&settings("ftp://127.0.0.1")).unwrap_err().code,
            exit::USAGE
        );
        let uri: tonic::codegen::http::Uri = "https://[::1]:18500".parse().unwrap();
        assert_eq!(host_of(&uri).as_deref(), Some("::1"));
    }

    #[test]
    fn missing_ca_file_is_reported() {
        let mut s = settings("https://127.0.0.1:18500");
        s.ca_file = Some("/nonexistent/ca.crt".into());
        let err = endpoint(&s).unwrap_err();
        assert!(err.message.contains("/nonexistent/ca.crt"), "{err}");
    }
}
