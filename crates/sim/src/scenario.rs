//! Activities: what a process did (operation, source, resource, data, result, …), drawn for a
//! [`Context`]. Logs are activities as they are; alerts are activities that matched a policy
//! (see [`crate::generate`]).

use rand::RngCore;

use crate::vocab;
use crate::world::{Context, below, chance, pick};

/// The process-level part of an event, shared by logs and alerts.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    /// `Operation`: Process, File, Network, Capabilities or Syscall.
    pub operation: &'static str,
    /// `Source`: the executable that acted.
    pub source: String,
    /// `ProcessName`.
    pub process_name: String,
    /// `ParentProcessName`.
    pub parent_process_name: String,
    /// `Resource`.
    pub resource: String,
    /// `Data`, `key=value` pairs separated by spaces.
    pub data: String,
    /// `Result`.
    pub result: &'static str,
    /// `Cwd`.
    pub cwd: String,
    /// `TTY` (`pts0` or empty).
    pub tty: &'static str,
    /// `UserName` (often empty).
    pub user_name: String,
    /// `UID`.
    pub uid: i32,
    /// `ExecEvent.ExecutableName` when an exec context is known.
    pub exec_name: Option<String>,
    /// Whether the v1.7 hashes are filled in.
    pub hashed: bool,
}

/// Operations and their weights (percent); file events dominate.
const OPERATIONS: &[(&str, u64)] = &[
    ("File", 55),
    ("Process", 20),
    ("Network", 18),
    ("Capabilities", 4),
    ("Syscall", 3),
];

/// Draws an operation by weight.
pub fn operation(rng: &mut impl RngCore) -> &'static str {
    let mut roll = rng.next_u64() % 100;
    for &(op, weight) in OPERATIONS {
        if roll < weight {
            return op;
        }
        roll -= weight;
    }
    "File"
}

/// The last path component.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `exe args` without a trailing blank when there are no arguments.
fn command_line(exe: &str, args: &str) -> String {
    if args.is_empty() {
        exe.to_string()
    } else {
        format!("{exe} {args}")
    }
}

fn result(rng: &mut impl RngCore, denied: u64, unknown: u64, code: i32) -> &'static str {
    let roll = rng.next_u64() % 100;
    if roll < denied {
        "Permission denied"
    } else if roll < denied + unknown {
        match code {
            -2 => "Unknown (-2)",
            -111 => "Unknown (-111)",
            _ => "Unknown (-1)",
        }
    } else {
        "Passed"
    }
}

/// Draws an activity of operation `op` in `ctx`.
pub fn activity(rng: &mut impl RngCore, ctx: &Context, op: &'static str) -> Activity {
    // Who acts: (executable, parent, user, uid, cwd, is the app's main process).
    let (exe, parent, user, uid, cwd, main) = match ctx.app {
        Some(app) => {
            if chance(rng, 70) {
                (app.exe, app.exe, app.user.0, app.user.1, app.cwd, true)
            } else {
                let tool = pick(rng, vocab::TOOLS).0;
                let parent = *pick(rng, &[app.exe, "/bin/sh", "/bin/bash"]);
                let cwd = *pick(rng, &[app.cwd, "/", "/root", "/tmp"]);
                let (user, uid) = if chance(rng, 50) {
                    ("root", 0)
                } else {
                    app.user
                };
                (tool, parent, user, uid, cwd, false)
            }
        }
        None => {
            let (exe, parent, _, user, uid) = *pick(rng, vocab::HOST_PROCS);
            let cwd = if uid == 0 { "/" } else { "/home/ubuntu" };
            (exe, parent, user, uid, cwd, false)
        }
    };
    let mut a = Activity {
        operation: op,
        source: exe.to_string(),
        process_name: exe.to_string(),
        parent_process_name: parent.to_string(),
        cwd: cwd.to_string(),
        uid,
        ..Activity::default()
    };
    let interactive = !main && matches!(basename(parent), "bash" | "sshd" | "sudo");
    a.tty = if interactive && chance(rng, 50) {
        "pts0"
    } else {
        ""
    };
    if chance(rng, 35) {
        a.user_name = user.to_string();
    }
    a.hashed = chance(rng, 15);
    match op {
        "Process" => process(rng, ctx, &mut a),
        "Network" => network(rng, ctx, &mut a),
        "Capabilities" => {
            let cap = *pick(rng, vocab::CAPABILITIES);
            a.resource = cap.to_string();
            a.data = format!("lsm=SECURITY_CAPABLE cap={cap}");
            a.result = result(rng, 10, 0, 0);
        }
        "Syscall" => {
            let (data, resource) = *pick(rng, vocab::SYSCALLS);
            a.data = data.to_string();
            a.resource = resource.to_string();
            a.result = result(rng, 10, 5, -1);
        }
        _ => file(rng, ctx, &mut a),
    }
    if a.exec_name.is_none() && chance(rng, 30) {
        a.exec_name = Some(basename(&a.process_name).to_string());
    }
    a
}

/// An exec: `Source` is the parent doing the exec, `ProcessName` the new program.
fn process(rng: &mut impl RngCore, ctx: &Context, a: &mut Activity) {
    let (child, args) = match ctx.app {
        Some(app) if chance(rng, 15) => (app.exe, ""),
        Some(_) => {
            let (tool, args) = *pick(rng, vocab::TOOLS);
            (tool, *pick(rng, args))
        }
        None => {
            let (exe, parent, args, _, _) = *pick(rng, vocab::HOST_PROCS);
            a.parent_process_name = parent.to_string();
            (exe, *pick(rng, args))
        }
    };
    a.source = a.parent_process_name.clone();
    a.process_name = child.to_string();
    a.resource = command_line(child, args);
    a.data = if chance(rng, 95) {
        "syscall=SYS_EXECVE"
    } else {
        "syscall=SYS_EXECVEAT"
    }
    .to_string();
    a.result = result(rng, 5, 0, 0);
    a.exec_name = Some(basename(child).to_string());
}

/// A file open.
fn file(rng: &mut impl RngCore, ctx: &Context, a: &mut Activity) {
    let roll = rng.next_u64() % 100;
    let path = match ctx.app {
        Some(app) if roll < 45 => *pick(rng, app.files),
        None if roll < 60 => *pick(rng, vocab::HOST_FILES),
        _ if roll < 92 => *pick(rng, vocab::COMMON_FILES),
        _ => *pick(rng, vocab::SENSITIVE_FILES),
    };
    a.resource = path.to_string();
    let flags = *pick(rng, vocab::OPEN_FLAGS);
    a.data = if chance(rng, 85) {
        format!("syscall=SYS_OPENAT fd=-100 flags={flags}")
    } else {
        format!("syscall=SYS_OPEN flags={flags}")
    };
    a.result = result(rng, 3, 4, -2);
}

/// A socket, connect, accept or bind.
fn network(rng: &mut impl RngCore, ctx: &Context, a: &mut Activity) {
    let ports: &[u16] = ctx.app.map_or(&[22, 443, 6443, 10250], |app| app.ports);
    let port = *pick(rng, ports);
    let ip = *pick(rng, vocab::REMOTE_IPS);
    let (data, resource) = match below(rng, 5) {
        0 => {
            let kind = *pick(
                rng,
                &[
                    "domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC protocol=0",
                    "domain=AF_INET type=SOCK_STREAM protocol=0",
                    "domain=AF_INET6 type=SOCK_STREAM protocol=6",
                    "domain=AF_INET type=SOCK_DGRAM|SOCK_NONBLOCK protocol=0",
                    "domain=AF_UNIX type=SOCK_STREAM|SOCK_CLOEXEC protocol=0",
                ],
            );
            ("syscall=SYS_SOCKET".to_string(), kind.to_string())
        }
        1 => (
            format!("syscall=SYS_CONNECT fd={}", 3 + below(rng, 40)),
            format!("sa_family=AF_INET sin_port={port} sin_addr={ip}"),
        ),
        2 => (
            "syscall=SYS_BIND fd=3".to_string(),
            format!("sa_family=AF_INET sin_port={port} sin_addr=0.0.0.0"),
        ),
        3 => (
            "kprobe=tcp_accept domain=AF_INET".to_string(),
            format!(
                "remoteip=10.244.{}.{} port={port} protocol=TCP",
                below(rng, 8),
                2 + below(rng, 250)
            ),
        ),
        _ => (
            "kprobe=tcp_connect domain=AF_INET".to_string(),
            format!("remoteip={ip} port={port} protocol=TCP"),
        ),
    };
    a.data = data;
    a.resource = resource;
    a.result = result(rng, 2, 2, -111);
}

/// Splits `Data` into `EventData`: `syscall=SYS_OPENAT fd=-100` → {"Syscall": "SYS_OPENAT", "Fd": "-100"}.
pub fn event_data(data: &str) -> std::collections::HashMap<String, String> {
    data.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let mut key = String::with_capacity(k.len());
            let mut chars = k.chars();
            if let Some(first) = chars.next() {
                key.extend(first.to_uppercase());
                key.push_str(chars.as_str());
            }
            (key, v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_capitalises_keys() {
        let m = event_data("syscall=SYS_OPENAT fd=-100 flags=O_RDONLY");
        assert_eq!(m.len(), 3);
        assert_eq!(m["Syscall"], "SYS_OPENAT");
        assert_eq!(m["Fd"], "-100");
        assert_eq!(m["Flags"], "O_RDONLY");
        let k = event_data("kprobe=tcp_connect domain=AF_INET");
        assert_eq!(k["Kprobe"], "tcp_connect");
        assert_eq!(k["Domain"], "AF_INET");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/usr/bin/bash"), "bash");
        assert_eq!(basename("coredns"), "coredns");
    }
}
