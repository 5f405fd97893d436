//! A test CA made with openssl, and the server's and a client's
//! certificates it signed: for an etcd that speaks only TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA, and the server's and a client's certificates it signed.
pub(crate) struct Certificates {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl Certificates {
    /// Made with openssl in `dir`: P-256 keys, valid for a day, the
    /// server's for 127.0.0.1.
    pub(crate) fn make(dir: &Path) -> Certificates {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=freezefs test CA",
                ][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (csr, pem, keyfile) = (
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.key"),
            );
            let ext = dir.join(format!("{name}.ext"));
            std::fs::write(&ext, extensions).unwrap();
            openssl(
                &[
                    &["req", "-nodes", "-subj", &format!("/CN={name}")][..],
                    &key,
                    &["-keyout", &keyfile, "-out", &csr],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                &pem,
            ]);
        }
        Certificates {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}
