//! The PostgreSQL front end's security: SCRAM-SHA-256 users from the config file, TLS
//! (sslmode=require, --tls-required), loopback-only trust, the connection limit, and
//! protocol garbage that must only ever end its own connection.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use armorlake_query::pg::ScramSecret;

use crate::support::{armorlake, output_text, psql_conn, start_up};
use crate::wire;

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn conninfo(port: u16, user: &str, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} dbname=kubearmor {extra}")
}

#[test]
fn scram_users_from_the_config_file_log_in_and_wrong_passwords_do_not() {
    let dir = tempfile::tempdir().unwrap();
    // bob's secret in PostgreSQL's format, as `pg_authid.rolpassword` holds it.
    let bob = ScramSecret::from_password_with("bob's password", b"0123456789abcdef", 4096);
    let config = write(
        dir.path(),
        "armorlake.toml",
        &format!(
            "[[users]]\nname = \"alice\"\npassword = \"wonderland\"\n\n\
             [[users]]\nname = \"bob\"\nscram_sha_256 = \"{}\"\n",
            bob.to_postgres()
        ),
    );
    let up = start_up(&dir.path().join("data"), &[], &["--config", &config]);
    let port = up.pg_port;

    for (user, password) in [("alice", "wonderland"), ("bob", "bob's password")] {
        let out = psql_conn(
            &conninfo(port, user, ""),
            &[("PGPASSWORD", password)],
            &["-At", "-c", "SELECT 40 + 2"],
        );
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{user} could not log in: {stderr}");
        assert_eq!(stdout.trim(), "42");
    }

    // A wrong password, and a user that does not exist, fail the same way.
    for (user, password) in [("alice", "wrong"), ("bob", "wonderland"), ("mallory", "x")] {
        let out = psql_conn(
            &conninfo(port, user, ""),
            &[("PGPASSWORD", password)],
            &["-c", "SELECT 1"],
        );
        let (_, stderr) = output_text(&out);
        assert!(!out.status.success(), "{user}/{password} logged in");
        assert!(
            stderr.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{user}: {stderr}"
        );
    }

    // Without a password, nothing (no trust once users are configured).
    let out = psql_conn(&conninfo(port, "alice", ""), &[], &["-w", "-c", "SELECT 1"]);
    assert!(!out.status.success());

    // libpq does not expose the SQLSTATE of a failed login: check it on the wire, with a
    // client that offers a proof no password produces.
    for user in ["alice", "mallory"] {
        let refused = wire::scram_with_wrong_proof(port, user);
        assert_eq!(refused[&'C'], "28P01", "{refused:?}");
        assert_eq!(refused[&'S'], "FATAL");
    }
}

#[test]
fn trust_without_users_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = armorlake();
    cmd.args(["up", "--pg-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "up started without authentication");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without authentication") && stderr.contains("[[users]]"),
        "{stderr}"
    );
}

/// A throwaway certificate for localhost and 127.0.0.1; returns (cert path, key path).
pub fn self_signed(dir: &Path) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (
        write(dir, "server.crt", &cert.cert.pem()),
        write(dir, "server.key", &cert.signing_key.serialize_pem()),
    )
}

#[test]
fn tls_with_sslmode_require_and_plaintext_refused_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let up = start_up(
        &dir.path().join("data"),
        &[],
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-required"],
    );
    let port = up.pg_port;

    // sslmode=require: encrypted. verify-full: and the certificate checks out for the host.
    for extra in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-full sslrootcert={cert} host=localhost"),
    ] {
        let out = psql_conn(
            &conninfo(port, "armorlake", &extra),
            &[],
            &["-c", "\\conninfo", "-At", "-c", "SELECT 1"],
        );
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{extra}: {stderr}");
        assert!(stdout.contains("SSL connection"), "{extra}: {stdout}");
    }

    // Plaintext is refused with a message that says what to do, as FATAL 28000.
    let out = psql_conn(
        &conninfo(port, "armorlake", "sslmode=disable"),
        &[],
        &["-c", "SELECT 1"],
    );
    let (_, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("accepts only TLS") && stderr.contains("sslmode=require"),
        "{stderr}"
    );
    let refused = wire::start_session(port, "armorlake", &[]).unwrap_err();
    assert_eq!(refused[&'C'], "28000");
    assert_eq!(refused[&'S'], "FATAL");

    // A client that asks for TLS and then does not speak it only loses its own connection.
    let mut stream = wire::connect(port);
    stream.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(); // SSLRequest
    let mut answer = [0u8; 1];
    std::io::Read::read_exact(&mut stream, &mut answer).unwrap();
    assert_eq!(answer[0], b'S');
    stream.write_all(b"this is not a TLS ClientHello").unwrap();
    wire::read_until_closed(&mut stream);
    let out = psql_conn(
        &conninfo(port, "armorlake", "sslmode=require"),
        &[],
        &["-At", "-c", "SELECT 1"],
    );
    assert!(out.status.success(), "{}", output_text(&out).1);
}

#[test]
fn tls_is_optional_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let up = start_up(
        &dir.path().join("data"),
        &[],
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    for mode in ["require", "disable"] {
        let out = psql_conn(
            &conninfo(up.pg_port, "armorlake", &format!("sslmode={mode}")),
            &[],
            &["-At", "-c", "SELECT 1"],
        );
        assert!(out.status.success(), "{mode}: {}", output_text(&out).1);
    }
    // A certificate that does not load stops `up` with the file's name, never plaintext.
    let bad = write(dir.path(), "bad.crt", "not a certificate");
    let mut cmd = armorlake();
    cmd.args([
        "up",
        "--pg-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &bad,
        "--tls-key",
        &key,
    ])
    .arg("--data-dir")
    .arg(dir.path().join("data2"));
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.crt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sessions_beyond_max_connections_get_53300_and_the_slot_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &["--max-connections", "2"]);
    let port = up.pg_port;
    let first = wire::start_session(port, "armorlake", &[]).unwrap();
    let mut second = wire::start_session(port, "armorlake", &[]).unwrap();

    let refused = wire::start_session(port, "armorlake", &[]).unwrap_err();
    assert_eq!(refused[&'C'], "53300", "{refused:?}");
    assert_eq!(refused[&'M'], "sorry, too many clients already");
    let out = psql_conn(&conninfo(port, "armorlake", ""), &[], &["-c", "SELECT 1"]);
    assert!(output_text(&out).1.contains("too many clients"));

    // The sessions that got in keep working; when one leaves, a new one gets its place.
    let rows = wire::simple_query(&mut second, "SELECT 7");
    assert_eq!(wire::first_column(&rows), ["7"]);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut third = loop {
        match wire::start_session(port, "armorlake", &[]) {
            Ok(s) => break s,
            Err(e) => {
                assert_eq!(e[&'C'], "53300");
                assert!(Instant::now() < deadline, "the slot never came back");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(
        wire::first_column(&wire::simple_query(&mut third, "SELECT 8")),
        ["8"]
    );
}

#[test]
fn protocol_garbage_closes_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &[]);
    let port = up.pg_port;
    let mut bystander = wire::start_session(port, "armorlake", &[]).unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        // Pseudo-random bytes after a good startup (starting with no valid message type).
        std::iter::once(1u8)
            .chain((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8))
            .collect(),
        // An unknown message type.
        b"\xff\x00\x00\x00\x08abcd".to_vec(),
        // A message announcing a length far beyond any limit.
        b"Q\x7f\xff\xff\xffSELECT".to_vec(),
    ];
    for bytes in garbage {
        let mut session = wire::start_session(port, "armorlake", &[]).unwrap();
        // The server may close before reading everything: a failed write is fine.
        let _ = session.write_all(&bytes);
        wire::read_until_closed(&mut session);
        let rows = wire::simple_query(&mut bystander, "SELECT 1");
        assert_eq!(wire::first_column(&rows), ["1"], "after {bytes:?}");
    }

    // Garbage instead of a startup message, and a truncated message followed by a hang-up.
    let mut raw = wire::connect(port);
    raw.write_all(b"GET / HTTP/1.1\r\nHost: armorlake\r\n\r\n")
        .unwrap();
    wire::read_until_closed(&mut raw);
    let mut session = wire::start_session(port, "armorlake", &[]).unwrap();
    session.write_all(b"Q\x00\x00\x01\x00SELECT").unwrap();
    drop(session);

    let rows = wire::simple_query(&mut bystander, "SELECT 2");
    assert_eq!(wire::first_column(&rows), ["2"]);
    let mut fresh = wire::start_session(port, "armorlake", &[]).unwrap();
    assert_eq!(
        wire::first_column(&wire::simple_query(&mut fresh, "SELECT 3")),
        ["3"]
    );
}
