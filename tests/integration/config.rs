//! Layered configuration, seen from outside: defaults < `ARMORLAKE_*` environment <
//! `--config` file < flags, with the real binary; and unknown keys refused.

use std::net::TcpListener;
use std::process::Stdio;

use crate::support::{Proc, armorlake};

/// A loopback address nothing listens on right now.
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Starts a master with `env`, `file` (TOML text, if any) and `flags`; returns the address
/// it listens on.
fn master_listen(env: Option<&str>, file: Option<&str>, flags: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = armorlake();
    cmd.arg("master")
        .arg("--data-dir")
        .arg(dir.path())
        .args(flags);
    cmd.env_remove("ARMORLAKE_MASTER_LISTEN")
        .env_remove("ARMORLAKE_CONFIG");
    if let Some(listen) = env {
        cmd.env("ARMORLAKE_MASTER_LISTEN", listen);
    }
    if let Some(text) = file {
        let path = dir.path().join("master.toml");
        std::fs::write(&path, text).unwrap();
        cmd.env("ARMORLAKE_CONFIG", &path);
    }
    let (_master, line) = Proc::start(cmd, "master is listening on");
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn the_file_beats_the_environment_and_flags_beat_the_file() {
    let (env, file, flag) = (free_addr(), free_addr(), free_addr());
    let toml = format!("listen = \"{file}\"\n");
    assert_eq!(
        master_listen(Some(&env), None, &[]),
        env,
        "environment over default"
    );
    assert_eq!(
        master_listen(Some(&env), Some(&toml), &[]),
        file,
        "file over environment"
    );
    assert_eq!(
        master_listen(Some(&env), Some(&toml), &["--listen", &flag]),
        flag,
        "flag over file"
    );
}

#[test]
fn unknown_keys_and_missing_required_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.toml");
    std::fs::write(
        &path,
        "master = \"http://127.0.0.1:1\"\nkubearmr = [\"x:1\"]\n",
    )
    .unwrap();
    let out = armorlake()
        .args(["operator", "--config"])
        .arg(&path)
        .env_remove("ARMORLAKE_KUBEARMOR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("kubearmr"), "{err}");

    std::fs::write(&path, "master = \"http://127.0.0.1:1\"\n").unwrap();
    let out = armorlake()
        .args(["operator", "--config"])
        .arg(&path)
        .env_remove("ARMORLAKE_KUBEARMOR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--kubearmor"), "{err}");
}
