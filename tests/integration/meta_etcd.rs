//! The master's metadata in etcd: a real etcd (Debian's etcd-server, installed by
//! .ci/deps.sh) on 127.0.0.1 with a temporary data directory; the master keeps its
//! metadata there and finds it again after a restart. Skipped, saying so, when no etcd
//! is installed.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use armorlake_meta::{ClusterSecurity, GrpcMeta, MetaService, NodeInfo, Role};

use crate::support::{Proc, armorlake, eventually};

/// A running etcd, killed when dropped.
struct Etcd {
    child: Child,
    client: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The etcd binary: `ARMORLAKE_ETCD`, or `etcd` on the PATH.
fn etcd_binary() -> Option<String> {
    let binary = std::env::var("ARMORLAKE_ETCD").unwrap_or_else(|_| "etcd".into());
    let found = Command::new(&binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some(binary)
}

fn start_etcd(binary: &str, dir: &Path) -> Etcd {
    let (client, peer) = (free_port(), free_port());
    let client = format!("127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .args(["--name", "armorlake-test"])
        .args(["--listen-client-urls", &format!("http://{client}")])
        .args(["--advertise-client-urls", &format!("http://{client}")])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("armorlake-test={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let etcd = Etcd { child, client };
    eventually(Duration::from_secs(30), "etcd to listen", || {
        TcpStream::connect(&etcd.client).ok().map(|_| ())
    });
    etcd
}

fn start_master(store: &str) -> (Proc, String) {
    let mut cmd = armorlake();
    cmd.args(["master", "--listen", "127.0.0.1:0", "--store", store]);
    let (proc, line) = Proc::start(cmd, "master is listening on");
    (proc, line.rsplit(' ').next().unwrap().to_string())
}

#[test]
fn a_master_on_etcd_keeps_its_metadata_across_a_restart() {
    let Some(binary) = etcd_binary() else {
        println!(
            "SKIPPED a_master_on_etcd_keeps_its_metadata_across_a_restart: no etcd installed \
             (apt-get install etcd-server, or set ARMORLAKE_ETCD)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(&binary, dir.path());
    let store = format!("etcd://{}/armorlake-test/", etcd.client);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (master, addr) = start_master(&store);
    let node = NodeInfo::new("op-etcd", Role::Operator, "127.0.0.1:1", "test").with_cluster("east");
    let client = |addr: &str| {
        let _in_runtime = rt.enter();
        GrpcMeta::connect_lazy(addr, &ClusterSecurity::none()).unwrap()
    };
    rt.block_on(client(&addr).register(node)).unwrap();
    let version = rt.block_on(client(&addr).version()).unwrap();
    drop(master);

    // A new master process, the same etcd: the node and the version are still there.
    let (_master, addr) = start_master(&store);
    let meta = client(&addr);
    let nodes = rt.block_on(meta.nodes()).unwrap();
    let node = nodes
        .iter()
        .find(|n| n.id == "op-etcd")
        .expect("op-etcd survives");
    assert_eq!(node.cluster, "east");
    assert_eq!(node.address, "127.0.0.1:1");
    assert!(rt.block_on(meta.version()).unwrap() >= version);

    // Another prefix of the same etcd is another, empty, armorlake.
    let (_other, other_addr) = start_master(&format!("etcd://{}/elsewhere/", etcd.client));
    let nodes = rt.block_on(client(&other_addr).nodes()).unwrap();
    assert!(nodes.iter().all(|n| n.id != "op-etcd"), "{nodes:?}");
}

#[test]
fn a_master_without_its_etcd_fails_clearly() {
    let out = armorlake()
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(["--store", &format!("etcd://127.0.0.1:{}", free_port())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("etcd"), "{err}");
}
