//! Starting armorlake processes and talking to them with real clients.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `armorlake` binary under test.
pub fn armorlake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_armorlake"))
}

/// A child process killed when dropped.
pub struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `cmd` and waits until it prints a line containing `ready`; returns the process
    /// and that line. Fails after 60 s (a debug build under load can be slow to start).
    pub fn start(cmd: Command, ready: &str) -> (Proc, String) {
        Proc::start_with_stderr(cmd, ready, Stdio::inherit())
    }

    /// [`Proc::start`] with the process' log (stderr) sent to `stderr`, e.g. a file the
    /// test reads afterwards.
    pub fn start_with_stderr(mut cmd: Command, ready: &str, stderr: Stdio) -> (Proc, String) {
        cmd.stdout(Stdio::piped())
            .stderr(stderr)
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn armorlake");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the ready line so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ready) => {
                    return (Proc { child }, line);
                }
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    panic!("process never printed {ready:?}: {e}");
                }
            }
        }
    }
}

/// A running KubeArmor simulator.
pub struct Sim {
    #[expect(dead_code, reason = "held for its Drop, which stops the process")]
    pub proc: Proc,
    /// `host:port` of its gRPC server.
    pub addr: String,
}

/// Starts `armorlake kubearmor-sim` on a free loopback port.
pub fn start_sim(rate: u64, seed: u64, extra: &[&str]) -> Sim {
    start_sim_on("127.0.0.1:0", rate, seed, extra)
}

/// Starts `armorlake kubearmor-sim` listening on `listen`.
pub fn start_sim_on(listen: &str, rate: u64, seed: u64, extra: &[&str]) -> Sim {
    let mut cmd = armorlake();
    cmd.args(["kubearmor-sim", "--listen", listen])
        .args(["--rate", &rate.to_string(), "--seed", &seed.to_string()])
        .args(extra);
    let (proc, line) = Proc::start(cmd, "listening on");
    let addr = line
        .rsplit(' ')
        .next()
        .expect("address in ready line")
        .to_string();
    Sim { proc, addr }
}

/// A running `armorlake up`.
pub struct Up {
    #[expect(dead_code, reason = "held for its Drop, which stops the process")]
    pub proc: Proc,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// Arrow Flight SQL port.
    pub flight_port: u16,
}

/// Starts `armorlake up` on a free loopback port with `data_dir`, pulling from `kubearmor`
/// (the built-in simulator when empty).
pub fn start_up(data_dir: &Path, kubearmor: &[&str], extra: &[&str]) -> Up {
    let mut cmd = armorlake();
    cmd.arg("up")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--pg-listen", "127.0.0.1:0", "--flush-interval", "2s"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .args(extra);
    for k in kubearmor {
        cmd.args(["--kubearmor", k]);
    }
    let (proc, line) = Proc::start(cmd, "armorlake is ready");
    let pg_port = line
        .split_whitespace()
        .skip_while(|w| *w != "-p")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("port in ready line");
    let flight_port = flight_port(&line);
    Up {
        proc,
        pg_port,
        flight_port,
    }
}

/// The Flight SQL port in a ready line (`… (Flight SQL: grpc://127.0.0.1:PORT)`).
pub fn flight_port(line: &str) -> u16 {
    line.split("grpc://")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c == ')' || c.is_whitespace()).next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("Flight SQL port in ready line")
}

/// psql against `port` (database kubearmor, user armorlake, no psqlrc, verbose errors),
/// to add arguments to.
pub fn psql_command(port: u16) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "armorlake",
            "-d",
            "kubearmor",
            "-v",
            "VERBOSITY=verbose",
        ])
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// Runs psql against `port` with `args` (see [`psql_command`]).
pub fn psql(port: u16, args: &[&str]) -> Output {
    psql_command(port)
        .args(args)
        .output()
        .expect("psql runs (is postgresql-client installed?)")
}

/// Runs one query with psql in unaligned, tuples-only mode and returns its rows; panics
/// with psql's error output if it fails.
pub fn query(port: u16, sql: &str) -> Vec<String> {
    let out = psql(port, &["-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    assert!(
        out.status.success(),
        "psql failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The single integer a query returns.
pub fn query_i64(port: u16, sql: &str) -> i64 {
    let rows = query(port, sql);
    assert_eq!(rows.len(), 1, "{sql:?} returned {rows:?}");
    rows[0].trim().parse().expect("an integer")
}

/// Polls `f` until it returns `Some`, or panics after `timeout` saying what was awaited.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs psql with a full connection string (`host=… port=… user=… sslmode=…`) and extra
/// environment (PGPASSWORD, PGOPTIONS, …).
pub fn psql_conn(conninfo: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new("psql")
        .args(["-X", "-v", "VERBOSITY=verbose", "-d", conninfo])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(env.iter().copied())
        .output()
        .expect("psql runs (is postgresql-client installed?)")
}

/// psql's stdout and stderr, for assertions.
pub fn output_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
