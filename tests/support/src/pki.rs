//! Test certificates made at run time with rcgen: a certificate authority, and leaves signed
//! by it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority: its PEM certificate and what signs leaves with it.
pub struct Ca {
    /// What signs leaves.
    pub issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM.
    pub pem: String,
}

/// A new self-signed CA called `name`.
pub fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
pub fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes into `dir` a test PKI: `ca.crt`; `server.crt`/`server.key` for localhost and
/// 127.0.0.1; `client.crt`/`client.key` from the same CA; `other.crt`/`other.key`, a client
/// certificate from another CA.
pub fn write_test_pki(dir: &std::path::Path) {
    let ca = new_ca("promdrop test CA");
    let other_ca = new_ca("some other CA");
    let (server_cert, server_key) = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&ca, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_cert, other_key) = leaf(
        &other_ca,
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    for (name, content) in [
        ("ca.crt", ca.pem.as_str()),
        ("server.crt", &server_cert),
        ("server.key", &server_key),
        ("client.crt", &client_cert),
        ("client.key", &client_key),
        ("other.crt", &other_cert),
        ("other.key", &other_key),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
}
