//! Builds the per-seed pools of pre-generated event variants. Every event of the sequence is a
//! clone of one pool entry with its per-event fields (times, PIDs, exec id) filled in, so the
//! expensive string work happens once, at [`crate::EventSource::new`].

use armorlake_proto::feeder::{Alert, ExecEvent, Log, Message};
use rand::RngCore;

use crate::scenario::{self, Activity, basename};
use crate::vocab;
use crate::world::{Context, World, below, chance, pick};

/// Log variants per seed.
pub const LOG_VARIANTS: usize = 4096;
/// Alert variants per seed.
pub const ALERT_VARIANTS: usize = 1024;
/// Message variants per seed.
pub const MESSAGE_VARIANTS: usize = 256;

/// Every `FULL_EVERY`-th log and alert variant (offset 3) has every single field set.
pub const FULL_EVERY: usize = 37;

/// A 64-hex digest that depends only on `(seed, text)`: the same binary always hashes the same.
fn digest(seed: u64, text: &str) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..4)
        .map(|i| format!("{:016x}", crate::generate::splitmix64(h.wrapping_add(i))))
        .collect()
}

/// Picks where an event happens: a host context with probability `host_percent`, else a container.
fn context<'w>(
    rng: &mut impl RngCore,
    world: &'w World,
    host_percent: u64,
    force_container: bool,
) -> &'w Context {
    if world.containers.is_empty() || (!force_container && chance(rng, host_percent)) {
        pick(rng, &world.host_contexts)
    } else {
        pick(rng, &world.containers)
    }
}

/// Forces the optional fields on, for the "every field set" variants.
fn fill_everything(a: &mut Activity) {
    a.tty = "pts0";
    a.hashed = true;
    if a.user_name.is_empty() {
        a.user_name = if a.uid == 0 {
            "root".to_string()
        } else {
            "app".to_string()
        };
    }
    if a.exec_name.is_none() {
        a.exec_name = Some(basename(&a.process_name).to_string());
    }
}

/// The fields logs and alerts share, in one place so both builders stay in step.
struct Common {
    hashes: [String; 4],
    exec_event: Option<ExecEvent>,
}

fn common(seed: u64, a: &Activity) -> Common {
    let hashes = if a.hashed {
        [
            digest(seed, &a.process_name),
            digest(seed, &a.parent_process_name),
            digest(seed, &a.resource),
            "SHA256".to_string(),
        ]
    } else {
        Default::default()
    };
    let exec_event = a.exec_name.as_ref().map(|name| ExecEvent {
        exec_id: String::new(), // set per event
        executable_name: name.clone(),
    });
    Common { hashes, exec_event }
}

/// The log pool.
pub fn logs(rng: &mut impl RngCore, seed: u64, world: &World) -> Vec<Log> {
    (0..LOG_VARIANTS)
        .map(|i| {
            let full = i % FULL_EVERY == 3;
            let ctx = context(rng, world, 12, full);
            let op = scenario::operation(rng);
            let mut a = scenario::activity(rng, ctx, op);
            if full {
                fill_everything(&mut a);
            }
            let host = &world.hosts[ctx.host];
            let Common {
                hashes: [process_hash, parent_hash, resource_hash, hash_algo],
                exec_event,
            } = common(seed, &a);
            Log {
                cluster_name: host.cluster.clone(),
                host_name: host.name.clone(),
                namespace_name: ctx.namespace.clone(),
                pod_name: ctx.pod.clone(),
                container_id: ctx.container_id.clone(),
                container_name: ctx.container_name.clone(),
                uid: a.uid,
                r#type: if ctx.is_host() {
                    "HostLog"
                } else {
                    "ContainerLog"
                }
                .to_string(),
                event_data: scenario::event_data(&a.data),
                source: a.source,
                operation: a.operation.to_string(),
                resource: a.resource,
                data: a.data,
                result: a.result.to_string(),
                container_image: ctx.image.clone(),
                parent_process_name: a.parent_process_name,
                process_name: a.process_name,
                labels: ctx.labels.clone(),
                owner: ctx.owner.clone(),
                cwd: a.cwd,
                tty: a.tty.to_string(),
                exec_event,
                node_id: host.node_id.clone(),
                process_hash,
                parent_hash,
                resource_hash,
                hash_algo,
                user_name: a.user_name,
                ..Log::default()
            }
        })
        .collect()
}

/// Replaces an exec activity's new program.
fn exec(a: &mut Activity, exe: &str, args: &str) {
    a.process_name = exe.to_string();
    a.resource = if args.is_empty() {
        exe.to_string()
    } else {
        format!("{exe} {args}")
    };
    a.exec_name = Some(basename(exe).to_string());
}

/// Makes a generic activity look like what `policy` catches.
fn tailor(rng: &mut impl RngCore, policy: &str, a: &mut Activity) {
    let ip_port = |ip: &str, port: u16| format!("remoteip={ip} port={port} protocol=TCP");
    match policy {
        p if p.starts_with("ksp-block-shell") => {
            let shell = *pick(rng, &["/bin/bash", "/bin/sh"]);
            let args = *pick(rng, &["", "-i", "-c id"]);
            exec(a, shell, args);
        }
        p if p.starts_with("ksp-block-pkg-mgr") => {
            let (exe, args) = *pick(
                rng,
                &[
                    ("/usr/bin/apt-get", "install -y netcat"),
                    ("/sbin/apk", "add curl"),
                    ("/usr/bin/apt", "update"),
                ],
            );
            exec(a, exe, args);
        }
        p if p.starts_with("ksp-audit-remote-tools") => {
            let (exe, args) = *pick(rng, &vocab::TOOLS[2..4]);
            let args = *pick(rng, args);
            exec(a, exe, args);
        }
        "hsp-audit-ssh-login" => {
            a.parent_process_name = "/usr/sbin/sshd".to_string();
            a.source = a.parent_process_name.clone();
            exec(a, "/usr/bin/bash", "-l");
            a.tty = "pts0";
        }
        p if p.starts_with("ksp-block-write-etc") => {
            a.resource = pick(
                rng,
                &[
                    "/etc/passwd",
                    "/etc/hosts",
                    "/etc/sudoers",
                    "/etc/ld.so.preload",
                ],
            )
            .to_string();
            a.data = "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_TRUNC".to_string();
        }
        p if p.starts_with("ksp-audit-sa-token") => {
            a.resource = "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string();
            a.data = "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY|O_CLOEXEC".to_string();
        }
        p if p.starts_with("ksp-restrict-secrets") => {
            a.resource = pick(rng, vocab::SENSITIVE_FILES).to_string()
        }
        "hsp-block-shadow-read" => a.resource = "/etc/shadow".to_string(),
        "hsp-audit-kubelet-config" => a.resource = "/var/lib/kubelet/config.yaml".to_string(),
        p if p.starts_with("ksp-block-raw-sockets") => {
            a.data = "syscall=SYS_SOCKET".to_string();
            a.resource = "domain=AF_INET type=SOCK_RAW protocol=1".to_string();
        }
        p if p.starts_with("knp-deny-egress-mining") => {
            a.data = "kprobe=tcp_connect domain=AF_INET".to_string();
            let ip = *pick(rng, &["198.51.100.23", "203.0.113.7"]);
            a.resource = ip_port(ip, *pick(rng, &[3333, 4444, 14444]));
        }
        p if p.starts_with("knp-audit-metadata") => {
            a.data = "kprobe=tcp_connect domain=AF_INET".to_string();
            a.resource = ip_port("169.254.169.254", 80);
        }
        p if p.starts_with("ksp-block-ptrace") => {
            a.data = "syscall=SYS_PTRACE request=PTRACE_ATTACH".to_string();
            a.resource = format!("/proc/{}/mem", 1 + below(rng, 300));
        }
        p if p.starts_with("ksp-deny-cap-net-raw") => {
            a.resource = "CAP_NET_RAW".to_string();
            a.data = "lsm=SECURITY_CAPABLE cap=CAP_NET_RAW".to_string();
        }
        _ => {}
    }
}

/// The alert pool.
pub fn alerts(rng: &mut impl RngCore, seed: u64, world: &World) -> Vec<Alert> {
    (0..ALERT_VARIANTS)
        .map(|i| {
            // The full variants are the throttling announcements, with the throttled alert's context.
            let full = i % FULL_EVERY == 3;
            let roll = rng.next_u64() % 100;
            let (ctx, policies, kind) = if !full && roll < 12 {
                (
                    context(rng, world, 100, false),
                    vocab::HOST_POLICIES,
                    "MatchedHostPolicy",
                )
            } else if !full && roll < 18 {
                (
                    context(rng, world, 0, true),
                    vocab::NETWORK_POLICIES,
                    "MatchedNetworkPolicy",
                )
            } else {
                (
                    context(rng, world, 0, true),
                    vocab::POLICIES,
                    "MatchedPolicy",
                )
            };
            // Without containers, fall back to host policies.
            let (policies, kind) = if ctx.is_host() {
                (vocab::HOST_POLICIES, "MatchedHostPolicy")
            } else {
                (policies, kind)
            };
            let &(name, op, severity, tags, message, action, enforcer) = pick(rng, policies);
            let policy = if ctx.is_host() {
                name.to_string()
            } else {
                format!("{name}{}", ctx.namespace)
            };
            let mut a = scenario::activity(rng, ctx, op);
            tailor(rng, &policy, &mut a);
            a.result = if action == "Block" {
                "Permission denied"
            } else {
                "Passed"
            };
            if full {
                fill_everything(&mut a);
            }
            let host = &world.hosts[ctx.host];
            let Common {
                hashes: [process_hash, parent_hash, resource_hash, hash_algo],
                exec_event,
            } = common(seed, &a);
            let mut alert = Alert {
                cluster_name: host.cluster.clone(),
                host_name: host.name.clone(),
                namespace_name: ctx.namespace.clone(),
                pod_name: ctx.pod.clone(),
                container_id: ctx.container_id.clone(),
                container_name: ctx.container_name.clone(),
                uid: a.uid,
                policy_name: policy,
                severity: severity.to_string(),
                tags: tags.to_string(),
                a_tags: tags.split(',').map(str::to_string).collect(),
                message: message.to_string(),
                r#type: kind.to_string(),
                event_data: scenario::event_data(&a.data),
                source: a.source,
                operation: a.operation.to_string(),
                resource: a.resource,
                data: a.data,
                action: action.to_string(),
                result: a.result.to_string(),
                container_image: ctx.image.clone(),
                parent_process_name: a.parent_process_name,
                process_name: a.process_name,
                enforcer: enforcer.to_string(),
                labels: ctx.labels.clone(),
                owner: ctx.owner.clone(),
                cwd: a.cwd,
                tty: a.tty.to_string(),
                exec_event,
                kube_armor_version: "v1.7.4".to_string(),
                node_id: host.node_id.clone(),
                process_hash,
                parent_hash,
                resource_hash,
                hash_algo,
                user_name: a.user_name,
                ..Alert::default()
            };
            if full {
                alert.r#type = "SystemEvent".to_string();
                alert.operation = "AlertThreshold".to_string();
                alert.message =
                    "Alert threshold reached: 10 alerts/s, dropping alerts for 30 s".to_string();
                alert.max_alerts_per_sec = 10;
                alert.dropping_alerts_interval = 30;
            }
            alert
        })
        .collect()
}

/// The daemon message pool.
pub fn messages(rng: &mut impl RngCore, world: &World) -> Vec<Message> {
    (0..MESSAGE_VARIANTS)
        .map(|_| {
            let host_index = below(rng, world.hosts.len());
            let host = &world.hosts[host_index];
            let local: Vec<&Context> = world
                .containers
                .iter()
                .filter(|c| c.host == host_index)
                .collect();
            let ctx = match (local.is_empty(), world.containers.is_empty()) {
                (false, _) => *pick(rng, &local),
                (true, false) => pick(rng, &world.containers),
                (true, true) => &world.host_contexts[host_index],
            };
            let &(level, template) = pick(rng, vocab::MESSAGES);
            let cid = ctx.container_id.get(..12).unwrap_or_default();
            let text = template
                .replace("{ns}", &ctx.namespace)
                .replace("{pod}", &ctx.pod)
                .replace("{cid}", cid)
                .replace("{policy}", &format!("ksp-block-shell-in-{}", ctx.namespace))
                .replace("{host}", &host.name)
                .replace("{pid}", &(1000 + below(rng, 60000)).to_string());
            Message {
                cluster_name: host.cluster.clone(),
                host_name: host.name.clone(),
                host_ip: host.ip.clone(),
                r#type: "Message".to_string(),
                level: level.to_string(),
                message: text,
                ..Message::default()
            }
        })
        .collect()
}
