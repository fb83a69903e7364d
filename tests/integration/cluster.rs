//! The cluster's metadata across processes: operators register with a master over gRPC,
//! report what they hold and pull, and the master keeps it across a restart.

use std::time::Duration;

use armorlake_meta::{ClusterSecurity, GrpcMeta, MetaService, Role};

use crate::support::{Proc, armorlake, eventually, start_sim};

fn start_master(listen: &str, dir: &std::path::Path) -> (Proc, String) {
    let mut cmd = armorlake();
    cmd.args(["master", "--listen", listen, "--data-dir"])
        .arg(dir);
    let (proc, line) = Proc::start(cmd, "master is listening on");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    (proc, addr)
}

#[test]
fn operators_report_to_a_master_that_survives_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(1000, 31, &[]);
    let master_dir = tempfile::tempdir().unwrap();
    let (master, addr) = start_master("127.0.0.1:0", master_dir.path());
    let url = format!("http://{addr}");

    let op_dir = tempfile::tempdir().unwrap();
    let mut cmd = armorlake();
    cmd.args([
        "operator",
        "--master",
        &url,
        "--name",
        "op-a",
        "--cluster",
        "east",
        "--listen",
        "127.0.0.1:0",
    ])
    .args([
        "--kubearmor",
        &sim.addr,
        "--flush-interval",
        "1s",
        "--data-dir",
    ])
    .arg(op_dir.path());
    let (_operator, _) = Proc::start(cmd, "operator op-a is running");

    let meta = {
        let _in_runtime = rt.enter();
        GrpcMeta::connect_lazy(&url, &ClusterSecurity::none()).unwrap()
    };
    let node = eventually(Duration::from_secs(30), "op-a to register", || {
        let nodes = rt.block_on(meta.nodes()).ok()?;
        nodes.into_iter().find(|n| n.id == "op-a")
    });
    assert_eq!(node.role, Role::Operator);
    assert_eq!(node.cluster, "east");
    eventually(Duration::from_secs(30), "op-a's rows and streams", || {
        let parts = rt.block_on(meta.partitions()).ok()?;
        let sources = rt.block_on(meta.sources()).ok()?;
        let rows: u64 = parts
            .iter()
            .filter(|p| p.operator == "op-a")
            .map(|p| p.rows)
            .sum();
        let streaming = sources
            .iter()
            .filter(|s| s.operator == "op-a" && s.state == "streaming")
            .count();
        (rows > 0 && streaming == 3).then_some(())
    });

    // Restart the master on the same port and data: it still knows op-a, and op-a's
    // heartbeats reach it again.
    drop(master);
    let (_master, _) = start_master(&addr, master_dir.path());
    let before = rt.block_on(meta.nodes()).unwrap();
    let op = before
        .iter()
        .find(|n| n.id == "op-a")
        .expect("op-a kept across restart");
    let last = op.heartbeat_micros;
    eventually(
        Duration::from_secs(30),
        "a heartbeat after the restart",
        || {
            let nodes = rt.block_on(meta.nodes()).ok()?;
            let op = nodes.into_iter().find(|n| n.id == "op-a")?;
            (op.heartbeat_micros > last).then_some(())
        },
    );
}
