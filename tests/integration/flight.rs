//! Arrow Flight SQL: ADBC's Flight SQL driver and pyarrow's Flight client, in the venv
//! `.ci/deps.sh` makes, against `armorlake up`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{armorlake, eventually, psql_command, query_i64, start_up};

/// The venv's python: `ARMORLAKE_PYTHON`, else `.venv/bin/python` at the repository root
/// (where `.ci/deps.sh` puts it).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ARMORLAKE_PYTHON") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make deps` (or set ARMORLAKE_PYTHON)",
        python.display()
    );
    python
}

/// Runs `tests/python/<script>` with `args`; fails the test with its output unless it
/// succeeds.
fn run_script(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("ok"), "{script}: {stdout}");
    stdout
}

/// Waits until every event table has rows (the built-in simulator fills them).
fn wait_for_rows(pg_port: u16) {
    for table in ["alerts", "logs"] {
        eventually(Duration::from_secs(60), &format!("rows in {table}"), || {
            (query_i64(pg_port, &format!("SELECT count(*) FROM {table}")) > 0).then_some(())
        });
    }
}

#[test]
fn adbc_flight_sql_queries_binds_parameters_and_lists_objects() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &["--simulate", "2000", "--flight-user", "ana:s3cret"],
    );
    wait_for_rows(up.pg_port);
    let uri = format!("grpc://127.0.0.1:{}", up.flight_port);
    let out = run_script("flight_adbc.py", &[&uri, "ana", "s3cret"]);
    println!("{out}");
}

#[test]
fn pyarrow_flight_gets_a_statement_and_auth_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &["--simulate", "2000", "--flight-user", "bo:pw"],
    );
    wait_for_rows(up.pg_port);
    let uri = format!("grpc://127.0.0.1:{}", up.flight_port);
    let out = run_script("flight_pyarrow.py", &[&uri, "bo", "pw"]);
    println!("{out}");
}

#[test]
fn without_users_flight_is_open_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[], &["--simulate", "2000"]);
    wait_for_rows(up.pg_port);
    let uri = format!("grpc://127.0.0.1:{}", up.flight_port);
    run_script("flight_pyarrow.py", &[&uri, "", ""]);

    // Not on loopback and no users: refused before serving anything.
    let dir = tempfile::tempdir().unwrap();
    let out = armorlake()
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--pg-listen", "127.0.0.1:0", "--flight-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[test]
fn flight_sql_signs_in_the_postgres_users_of_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("armorlake.toml");
    // One user by SCRAM secret as PostgreSQL stores it, one by development password.
    let secret = armorlake_query::pg::ScramSecret::from_password("s3cret-scram")
        .unwrap()
        .to_postgres();
    std::fs::write(
        &config,
        format!(
            "[[users]]\nname = \"dana\"\nscram_sha_256 = \"{secret}\"\n\n\
             [[users]]\nname = \"eve\"\npassword = \"dev-pw\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config = config.to_str().unwrap();
    let up = start_up(&data, &[], &["--simulate", "2000", "--config", config]);
    // psql signs in as eve too; wait until alerts have arrived.
    eventually(Duration::from_secs(60), "rows in alerts", || {
        let out = psql_command(up.pg_port)
            .args(["-U", "eve", "-A", "-t", "-c", "SELECT count(*) FROM alerts"])
            .env("PGPASSWORD", "dev-pw")
            .output()
            .unwrap();
        let n: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (n > 0).then_some(())
    });
    let uri = format!("grpc://127.0.0.1:{}", up.flight_port);
    // The script checks that these credentials work and that wrong, missing and forged
    // ones are refused.
    run_script("flight_pyarrow.py", &[&uri, "dana", "s3cret-scram"]);
    run_script("flight_pyarrow.py", &[&uri, "eve", "dev-pw"]);
}

#[test]
fn flight_sql_serves_tls_with_the_postgres_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::pg_security::self_signed(dir.path());
    let up = start_up(
        &dir.path().join("data"),
        &[],
        &[
            "--simulate",
            "2000",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--flight-user",
            "fay:pw",
        ],
    );
    wait_for_rows(up.pg_port);
    let uri = format!("grpc+tls://localhost:{}", up.flight_port);
    run_script("flight_pyarrow.py", &[&uri, "fay", "pw", &cert]);
}

#[test]
fn flight_sql_has_the_same_limits_as_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(
        dir.path(),
        &[],
        &[
            "--simulate",
            "100",
            "--max-connections",
            "1",
            "--statement-timeout",
            "2s",
        ],
    );
    let uri = format!("grpc://127.0.0.1:{}", up.flight_port);
    let out = run_script("flight_limits.py", &[&uri]);
    println!("{out}");
}
