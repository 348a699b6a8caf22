//! Serving certificates of govbroker's servers (the operator's admission webhook, the
//! provisioning API): read from a directory (`tls.crt`, `tls.key` and `ca.crt`, as
//! cert-manager writes them) or generated at start-up.
#![forbid(unsafe_code)]

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate could not be read or made; the message names the file or step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// A serving configuration and the CA bundle clients must trust.
pub struct Tls {
    /// For the HTTPS server (set ALPN protocols as the server needs).
    pub server_config: rustls::ServerConfig,
    /// PEM of the CA that signed the serving certificate.
    pub ca_bundle: Vec<u8>,
}

/// Reads the certificate from `dir`, or generates a CA and a serving certificate named
/// `name` for `hosts` (DNS names and IP addresses): kept in `dir` when one is given and
/// empty (so a restarted server keeps its CA and its clients never see an unknown one),
/// in memory otherwise.
pub fn load_or_generate(dir: Option<&Path>, hosts: &[String], name: &str) -> Result<Tls, Error> {
    if let Some(dir) = dir.filter(|d| !d.join("tls.crt").exists()) {
        let pems = generate(hosts, name)?;
        let write = |name: &str, bytes: &[u8]| {
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join(name), bytes))
                .map_err(|e| Error(format!("writing {}: {e}", dir.join(name).display())))
        };
        write("ca.crt", &pems.ca)?;
        write("tls.crt", &pems.cert)?;
        write("tls.key", &pems.key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.join("tls.key"), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error(format!("protecting {}: {e}", dir.join("tls.key").display())))?;
        }
    }
    let (cert_pem, key_pem, ca_pem) = match dir {
        Some(dir) => {
            let read = |name: &str| {
                std::fs::read(dir.join(name))
                    .map_err(|e| Error(format!("reading {}: {e}", dir.join(name).display())))
            };
            let cert = read("tls.crt")?;
            let key = read("tls.key")?;
            // Without a separate CA file, the certificate is its own trust anchor.
            let ca = read("ca.crt").or_else(|_| Ok::<_, Error>(cert.clone()))?;
            (cert, key, ca)
        }
        None => {
            let pems = generate(hosts, name)?;
            (pems.cert, pems.key, pems.ca)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error(format!("serving certificate: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error(format!("serving key: {e}")))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error(format!("TLS configuration: {e}")))?;
    Ok(Tls {
        server_config: config,
        ca_bundle: ca_pem,
    })
}

/// PEM of a certificate, its key and the CA that signed it.
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

fn generate(hosts: &[String], name: &str) -> Result<Pems, Error> {
    let err = |e: rcgen::Error| Error(format!("generating the certificate of {name}: {e}"));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name}-ca"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(Pems {
        cert: cert.pem().into_bytes(),
        key: key.serialize_pem().into_bytes(),
        ca: ca_cert.pem().into_bytes(),
    })
}
