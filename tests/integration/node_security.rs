//! Node-to-node security across processes: a master, an operator and a query node on mutual
//! TLS with a cluster CA answer queries; an operator without a certificate, or with one of
//! another CA, is refused by the master with a clear error on both sides; with a shared
//! token, a node with the wrong token is refused, by the master and by an operator's own
//! query-fragment service.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::support::{Proc, armorlake, eventually, query_i64, start_sim};

/// Events of the simulator, served at full speed.
const EVENTS: u64 = 3000;

/// PEM files of a cluster: its CA, and one certificate and key for the nodes.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// A fresh CA in `dir/<name>-ca.pem` and a node certificate it signed for 127.0.0.1.
    fn new(dir: &Path, name: &str) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let node_key = KeyPair::generate().unwrap();
        let node = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&node_key, &ca)
            .unwrap();
        let write = |file: &str, text: String| {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            cert: write("node.pem", node.pem()),
            key: write("node.key", node_key.serialize_pem()),
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, path) in [
            ("--cluster-ca", &self.ca),
            ("--cluster-cert", &self.cert),
            ("--cluster-key", &self.key),
        ] {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        args
    }
}

/// Starts a master with `extra` flags, its log going to `log`.
fn start_master(dir: &Path, extra: &[String], log: &Path) -> (Proc, String) {
    let mut cmd = armorlake();
    cmd.args(["master", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra);
    let log = std::fs::File::create(log).unwrap();
    let (proc, mut lines) = Proc::start_with(cmd, "master is listening on", log.into());
    let line = lines.pop().expect("the ready line");
    (proc, line.rsplit(' ').next().unwrap().to_string())
}

fn operator_command(master: &str, name: &str, sim: &str, dir: &Path, extra: &[String]) -> Command {
    let mut cmd = armorlake();
    cmd.args(["operator", "--master", master, "--name", name])
        .args(["--listen", "127.0.0.1:0", "--kubearmor", sim])
        .args(["--flush-interval", "1s", "--data-dir"])
        .arg(dir)
        .args(extra);
    cmd
}

fn start_query(master: &str, extra: &[String]) -> (Proc, u16) {
    let mut cmd = armorlake();
    cmd.args(["query", "--master", master, "--pg-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .args(extra);
    let (proc, line) = Proc::start(cmd, "query node is ready");
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "-p")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("port in ready line");
    (proc, port)
}

/// Runs `cmd` to its end (at most 60 s) and returns its stderr; it must fail.
fn refused(mut cmd: Command) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "a refused node exited 0: {stderr}");
            println!("refused as expected: {stderr}");
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node that should be refused kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn total(port: u16) -> i64 {
    ["alerts", "logs", "messages"]
        .iter()
        .map(|t| query_i64(port, &format!("SELECT count(*) FROM {t}")))
        .sum()
}

#[test]
fn a_cluster_on_mutual_tls_answers_and_refuses_nodes_without_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let tls = pki.args();
    let sim = start_sim(
        0,
        51,
        &[
            "--count",
            &EVENTS.to_string(),
            "--start",
            "2026-11-23T08:00:00Z",
        ],
    );
    let master_log = dir.path().join("master.log");
    let (_master, addr) = start_master(&dir.path().join("master"), &tls, &master_log);
    let master = format!("http://{addr}");

    let cmd = operator_command(&master, "op-tls", &sim.addr, &dir.path().join("op"), &tls);
    let (_operator, _) = Proc::start(cmd, "operator op-tls is running");
    let (_query, port) = start_query(&master, &tls);
    eventually(Duration::from_secs(60), "every event over mTLS", || {
        (total(port) == EVENTS as i64).then_some(())
    });
    let rows = query_i64(port, "SELECT count(*) FROM armorlake.nodes");
    assert!(
        rows >= 2,
        "the master lists the operator and the query node: {rows}"
    );

    // No certificate: the master drops the connection during the handshake.
    let cmd = operator_command(&master, "op-plain", &sim.addr, &dir.path().join("p"), &[]);
    let err = refused(cmd);
    assert!(err.contains("master unreachable"), "{err}");
    assert!(
        err.contains("--cluster-ca"),
        "the error hints at the cause: {err}"
    );
    // A certificate of another CA: the client does not trust the master's certificate,
    // and the master refuses the client's.
    let rogue = Pki::new(dir.path(), "rogue");
    let cmd = operator_command(
        &master,
        "op-rogue",
        &sim.addr,
        &dir.path().join("r"),
        &rogue.args(),
    );
    let err = refused(cmd);
    assert!(err.contains("certificate"), "{err}");

    let log = eventually(Duration::from_secs(10), "the master's warnings", || {
        let log = std::fs::read_to_string(&master_log).unwrap();
        (log.matches("refused a node connection").count() >= 2).then_some(log)
    });
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("peer=127.0.0.1:"),
        "the warning names the peer: {log}"
    );
}

#[test]
fn a_node_with_the_wrong_cluster_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(100, 52, &[]);
    let master_log = dir.path().join("master.log");
    let token = vec!["--cluster-token".to_string(), "s3cret-token".to_string()];
    let (_master, addr) = start_master(&dir.path().join("master"), &token, &master_log);
    let master = format!("http://{addr}");

    // The right token through the environment: accepted.
    let mut cmd = operator_command(&master, "op-good", &sim.addr, &dir.path().join("g"), &[]);
    cmd.env("ARMORLAKE_CLUSTER_TOKEN", "s3cret-token");
    let operator_log = dir.path().join("operator.log");
    let log = std::fs::File::create(&operator_log).unwrap();
    let (_operator, lines) = Proc::start_with(cmd, "operator op-good is running", log.into());
    let worker = lines
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();

    // The operator's fragment service refuses callers without the token too,
    // and says so on both sides.
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/worker_token.py");
    let out = Command::new(crate::pg_clients::python())
        .arg(script)
        .args([&worker, "s3cret-token"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("none refused") && lines[0].contains("no cluster token"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("wrong refused") && lines[1].contains("wrong cluster token"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("right passed") && lines[2].contains("not a plan this operator runs"),
        "past the check, the fragment service itself refuses the ticket: {stdout}"
    );
    assert!(
        !stdout.contains("s3cret"),
        "the token never shows: {stdout}"
    );
    let log = eventually(Duration::from_secs(10), "the operator's warnings", || {
        let log = std::fs::read_to_string(&operator_log).unwrap();
        (log.contains("no cluster token") && log.contains("wrong cluster token")).then_some(log)
    });
    assert!(log.contains("refused a node request"), "{log}");
    assert!(!log.contains("s3cret"), "the token never shows: {log}");

    let wrong = vec!["--cluster-token".to_string(), "guess".to_string()];
    let cmd = operator_command(&master, "op-bad", &sim.addr, &dir.path().join("b"), &wrong);
    let err = refused(cmd);
    assert!(err.contains("refused by the master"), "{err}");
    assert!(err.contains("wrong cluster token"), "{err}");
    assert!(!err.contains("s3cret"), "the token never shows: {err}");

    let cmd = operator_command(&master, "op-none", &sim.addr, &dir.path().join("n"), &[]);
    let err = refused(cmd);
    assert!(err.contains("no cluster token"), "{err}");

    let log = eventually(Duration::from_secs(10), "the master's warnings", || {
        let log = std::fs::read_to_string(&master_log).unwrap();
        (log.contains("wrong cluster token") && log.contains("no cluster token")).then_some(log)
    });
    assert!(
        log.contains("peer=127.0.0.1:"),
        "the warning names the peer: {log}"
    );
    assert!(!log.contains("guess"), "the token never shows: {log}");
}
