//! Test certificates made with rcgen at test time: a private CA, a valid leaf for the
//! generated site (`*.site.test`, `*.blog.test`, `localhost`, 127.0.0.1), an expired leaf, a
//! leaf for the wrong name, and a self-signed certificate, all written as PEM files into a
//! tempdir (for nginx and `--ca-file`).

use std::path::PathBuf;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A PEM certificate + key pair on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct TlsCerts {
    /// The private CA certificate (give it to `--ca-file`).
    pub ca: PathBuf,
    /// Valid for every site/blog host, `localhost` and 127.0.0.1; signed by the CA.
    pub leaf: CertFiles,
    /// Signed by the CA, expired in 2021.
    pub expired: CertFiles,
    /// Signed by the CA, valid only for `other.example`.
    pub wrong_name: CertFiles,
    /// Self-signed, valid names, not from the CA.
    pub self_signed: CertFiles,
    dir: tempfile::TempDir,
}

/// The names the valid leaf covers.
pub const LEAF_NAMES: [&str; 4] = ["*.site.test", "*.blog.test", "localhost", "127.0.0.1"];
/// Site host names given the bad certificates in [`super::NginxTls::extra`].
pub const EXPIRED_HOST: &str = "expired.site.test";
pub const WRONG_NAME_HOST: &str = "wrongname.site.test";
pub const SELF_SIGNED_HOST: &str = "selfsigned.site.test";

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "ringcrawl tests");
    dn
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl TlsCerts {
    pub fn generate() -> TlsCerts {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-certs")
            .tempdir()
            .expect("tempdir");
        let save = |name: &str, cert: &rcgen::Certificate, key: &KeyPair| {
            let c = dir.path().join(format!("{name}.pem"));
            let k = dir.path().join(format!("{name}.key"));
            std::fs::write(&c, cert.pem()).expect("write cert");
            std::fs::write(&k, key.serialize_pem()).expect("write key");
            CertFiles { cert: c, key: k }
        };

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name = dn("ringcrawl test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let ca = save("ca", &ca_cert, &ca_key).cert;

        let issue = |name: &str, sans: &[&str], expired: bool| {
            let key = KeyPair::generate().expect("leaf key");
            let mut p = CertificateParams::new(names(sans)).expect("leaf params");
            p.distinguished_name = dn(sans[0]);
            if expired {
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign leaf");
            save(name, &cert, &key)
        };
        let leaf = issue("leaf", &LEAF_NAMES, false);
        let expired = issue("expired", &LEAF_NAMES, true);
        let wrong_name = issue("wrong-name", &["other.example"], false);

        let ss_key = KeyPair::generate().expect("self-signed key");
        let mut ss = CertificateParams::new(names(&LEAF_NAMES)).expect("self-signed params");
        ss.distinguished_name = dn("self-signed");
        let ss_cert = ss.self_signed(&ss_key).expect("self-sign");
        let self_signed = save("self-signed", &ss_cert, &ss_key);

        TlsCerts {
            ca,
            leaf,
            expired,
            wrong_name,
            self_signed,
            dir,
        }
    }

    /// The nginx TLS setup: the valid leaf by default, the bad ones on their own hosts.
    pub fn nginx_tls(&self) -> super::NginxTls {
        let extra = |host: &str, c: &CertFiles| (host.to_string(), c.cert.clone(), c.key.clone());
        super::NginxTls {
            cert: self.leaf.cert.clone(),
            key: self.leaf.key.clone(),
            extra: vec![
                extra(EXPIRED_HOST, &self.expired),
                extra(WRONG_NAME_HOST, &self.wrong_name),
                extra(SELF_SIGNED_HOST, &self.self_signed),
            ],
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
