//! Clients of the API under test, for any identity.
#![allow(dead_code)]

use anyhow::Result;
use govbroker_api::proto::agencies_client::AgenciesClient;
use govbroker_api::proto::audit_client::AuditClient;
use govbroker_api::proto::data_services_client::DataServicesClient;
use govbroker_api::proto::quota_requests_client::QuotaRequestsClient;
use govbroker_e2e::api::{ApiServer, api_server};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` when there is a token.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::invalid_argument("token is not a header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

type Svc = InterceptedService<Channel, Bearer>;

/// gRPC clients of every service, as one caller.
#[derive(Clone)]
pub struct Grpc {
    pub agencies: AgenciesClient<Svc>,
    pub quota_requests: QuotaRequestsClient<Svc>,
    pub audit: AuditClient<Svc>,
    pub data_services: DataServicesClient<Svc>,
}

/// The API, started once per test process.
pub fn server() -> &'static ApiServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    api_server()
}

/// A TLS channel to the API, trusting its CA.
pub async fn channel() -> Result<Channel> {
    let server = server();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server.ca_pem))
        .domain_name("localhost");
    Ok(Channel::from_shared(server.url.clone())?
        .tls_config(tls)?
        .connect()
        .await?)
}

/// gRPC clients over TLS for the bearer of `token` (none: anonymous).
pub async fn grpc(token: Option<&str>) -> Result<Grpc> {
    let channel = channel().await?;
    let bearer = Bearer(token.map(str::to_owned));
    Ok(Grpc {
        agencies: AgenciesClient::with_interceptor(channel.clone(), bearer.clone()),
        quota_requests: QuotaRequestsClient::with_interceptor(channel.clone(), bearer.clone()),
        audit: AuditClient::with_interceptor(channel.clone(), bearer.clone()),
        data_services: DataServicesClient::with_interceptor(channel, bearer),
    })
}

/// An HTTP client that trusts the API's CA.
pub fn http() -> Result<reqwest::Client> {
    let server = server();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&server.ca_pem)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()?)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>()?)
}
