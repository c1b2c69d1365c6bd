//! `https://` endpoints: the server is verified against --ca-file and a client certificate is
//! sent. The server is `openssl s_server -WWW` (it serves files, here a machines page) requiring
//! a client certificate signed by the test CA; the certificates come from flt-tests' TestCerts.

use super::harness::*;
use flt_tests::etcd::TestCerts;
use std::process::{Child, Command, Stdio};

struct TlsServer {
    child: Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Dir, certs: &TestCerts) -> TlsServer {
    let www = dir.0.join("www");
    std::fs::create_dir_all(www.join("flt/v1")).expect("mkdir");
    std::fs::write(
        www.join("flt/v1/machines"),
        format!(r#"{{"machines":[{{"id":"{M1}","primaryIP":"172.17.8.103"}}]}}"#),
    )
    .expect("write page");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-Verify", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&certs.server_cert)
        .arg("-key")
        .arg(&certs.server_key)
        .arg("-CAfile")
        .arg(&certs.ca)
        .current_dir(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the TLS test needs the openssl command");
    let server = TlsServer { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("openssl s_server did not listen on {port}");
}

#[test]
fn https_with_a_ca_and_a_client_certificate() {
    let dir = Dir::new("tls");
    let certs = TestCerts::make(&dir.0);
    let server = start(&dir, &certs);
    let api = super::api_double::ApiDouble::start();
    let endpoint = format!("https://127.0.0.1:{}", server.port);
    let with = |args: &[&str]| {
        Run {
            endpoint: Some(endpoint.clone()),
            ..Run::default()
        }
        .go(&api, args)
    };
    let ca = format!("--ca-file={}", certs.ca.display());
    let cert = format!("--cert-file={}", certs.client_cert.display());
    let key = format!("--key-file={}", certs.client_key.display());
    let o = with(&[&ca, &cert, &key, "list-machines", "--no-legend"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "113f16a7...\t172.17.8.103\t-\n");
    // Without the client certificate the server refuses the handshake.
    let o = with(&[&ca, "list-machines"]);
    assert_eq!(o.code, 1);
    assert!(o.err.contains("certificate"), "{}", o.err);
    // Without the CA the server's certificate is not trusted.
    let o = with(&[&cert, &key, "list-machines"]);
    assert_eq!(o.code, 1);
    assert!(o.err.contains("Get https://127.0.0.1:"), "{}", o.err);
    // A certificate without its key is a setup error.
    let o = with(&[&ca, &cert, "list-machines"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Unable to initialize client: TLS needs both --cert-file and --key-file for a client certificate\n"
    );
}
