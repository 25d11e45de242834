//! The cluster's certificate authorities and the certificates they issue, kept as PEM files.
//!
//! An authority is a self-signed CA certificate (`<name>.crt`) and its key (`<name>.key`, readable by its owner
//! only). Each authority signs one kind of certificate, so that a certificate of one kind is never accepted where
//! another is expected: the peer authority signs only the replicas' peer certificates, and the peer port trusts
//! only it. Keys are ECDSA P-256; an authority is valid for `CA_VALIDITY_DAYS`, what it issues for
//! `LEAF_VALIDITY_DAYS`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a PEM certificate authority and key it can sign with: {source}")]
    Key { path: PathBuf, source: rcgen::Error },
    #[error("cannot make a certificate for {subject}: {source}")]
    Issue { subject: String, source: rcgen::Error },
    #[error("not a certificate signing request with a valid signature: {0}")]
    Request(rcgen::Error),
    #[error("a certificate here names at most one organization (group), got {0:?}")]
    Organizations(Vec<String>),
}

/// What a certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Both ends of a mutual TLS connection (a replica's peer certificate: it serves and it dials).
    ServerAndClient,
    /// The client end only (a user's or a node's credentials).
    Client,
}

/// A certificate authority: its certificate and the key it signs with.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The paths of `<name>.crt` and `<name>.key` in `dir`.
pub fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Valid from an hour ago (clocks differ a little between hosts) for `days`.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl Authority {
    /// A new authority named `common_name`.
    pub fn create(common_name: &str) -> Result<Authority, PkiError> {
        let failed = |source| PkiError::Issue { subject: common_name.to_owned(), source };
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = ca_params(common_name);
        validity(&mut params, limits::CA_VALIDITY_DAYS);
        let cert_pem = params.self_signed(&key).map_err(failed)?.pem();
        Ok(Authority { cert_pem, issuer: Issuer::new(params, key) })
    }

    /// The authority kept as `<name>.crt` and `<name>.key` in `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Authority, PkiError> {
        let (cert_path, key_path) = files(dir, name);
        Authority::from_files(&cert_path, &key_path)
    }

    /// The authority whose certificate and key are the PEM files `cert_path` and `key_path` (made here or by
    /// another tool): what it issues names it by the certificate's subject and key identifier.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Authority, PkiError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::Key { path: key_path.to_owned(), source })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|source| PkiError::Key { path: cert_path.to_owned(), source })?;
        Ok(Authority { cert_pem, issuer })
    }

    /// The authority in `dir` under `name`, created there first if it is not.
    pub fn load_or_create(dir: &Path, name: &str, common_name: &str) -> Result<Authority, PkiError> {
        if files(dir, name).1.exists() {
            return Authority::load(dir, name);
        }
        let authority = Authority::create(common_name)?;
        authority.save(dir, name)?;
        Ok(authority)
    }

    pub fn save(&self, dir: &Path, name: &str) -> Result<(), PkiError> {
        save(dir, name, &Issued { cert_pem: self.cert_pem.clone(), key_pem: self.key_pem() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The key, PKCS#8 DER.
    pub fn key_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// A new key and a certificate for it: subject `common_name` with `organizations`, valid for `hosts` (IP
    /// addresses or DNS names), for `usage`.
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        hosts: &[String],
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        let failed = |source| PkiError::Issue { subject: common_name.to_owned(), source };
        let params = leaf_params(common_name, organizations, hosts, usage)?;
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A certificate for the key of a certificate signing request (PEM), whose signature proves the requester
    /// holds it: subject, hosts and usage are this authority's choice, never the request's.
    pub fn sign_request(
        &self,
        request_pem: &str,
        common_name: &str,
        organizations: &[&str],
        hosts: &[String],
        usage: Usage,
    ) -> Result<String, PkiError> {
        let failed = |source| PkiError::Issue { subject: common_name.to_owned(), source };
        let request = CertificateSigningRequestParams::from_pem(request_pem).map_err(PkiError::Request)?;
        let params = leaf_params(common_name, organizations, hosts, usage)?;
        let signed = CertificateSigningRequestParams { params, public_key: request.public_key };
        Ok(signed.signed_by(&self.issuer).map_err(failed)?.pem())
    }
}

/// What a leaf certificate says. rcgen keeps one value per attribute type, so a subject names at most one
/// organization: a user in several groups gets them from the static token file instead.
fn leaf_params(
    common_name: &str,
    organizations: &[&str],
    hosts: &[String],
    usage: Usage,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    match organizations {
        [] => {}
        [organization] => params.distinguished_name.push(DnType::OrganizationName, *organization),
        more => return Err(PkiError::Organizations(more.iter().map(|o| o.to_string()).collect())),
    }
    params.subject_alt_names = hosts
        .iter()
        .map(|host| match host.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => host.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(|source| PkiError::Issue { subject: common_name.to_owned(), source })?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match usage {
        Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, limits::LEAF_VALIDITY_DAYS);
    Ok(params)
}

/// A key and a certificate signing request for it with subject `common_name` (PEM both): what a node sends
/// to be given a certificate without its key ever leaving it.
pub fn request(common_name: &str) -> Result<(String, String), PkiError> {
    let failed = |source| PkiError::Issue { subject: common_name.to_owned(), source };
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    let request = params.serialize_request(&key).map_err(failed)?.pem().map_err(failed)?;
    Ok((request, key.serialize_pem()))
}

/// The SHA-256 of the DER of the first certificate in `cert_pem`, in lowercase hex (what a node token pins).
pub fn fingerprint(cert_pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    Some(hex(ring::digest::digest(&ring::digest::SHA256, &der).as_ref()))
}

/// When the first certificate in `cert_pem` stops being valid.
pub fn not_after(cert_pem: &str) -> Option<OffsetDateTime> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// The addresses (IPs and DNS names) the first certificate in `cert_pem` is valid for, in its order.
pub fn hosts(cert_pem: &str) -> Vec<String> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()) else { return Vec::new() };
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(&der) else { return Vec::new() };
    let Ok(Some(names)) = cert.subject_alternative_name() else { return Vec::new() };
    let name = |n: &GeneralName| match n {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        GeneralName::IPAddress([a, b, c, d]) => Some(IpAddr::from([*a, *b, *c, *d]).to_string()),
        GeneralName::IPAddress(bytes) => <[u8; 16]>::try_from(*bytes).ok().map(|v6| IpAddr::from(v6).to_string()),
        _ => None,
    };
    names.value.general_names.iter().filter_map(name).collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `issued` as `<name>.crt` and `<name>.key` in `dir` (created if missing), the key readable by its
/// owner only; each file is written whole under a temporary name and renamed.
pub fn save(dir: &Path, name: &str, issued: &Issued) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write { path: dir.to_owned(), source })?;
    let (cert_path, key_path) = files(dir, name);
    write(&cert_path, &issued.cert_pem, 0o644)?;
    write(&key_path, &issued.key_pem, 0o600)
}

/// Writes `text` to `path` whole (under a temporary name, synced, then renamed) with permissions `mode`.
pub fn write(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("partial");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&partial, path));
    written.map_err(|source| PkiError::Write { path: path.to_owned(), source })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_owned(), source })
}
