//! The simulated topology: clusters, nodes (hosts) and the pods/containers running on them,
//! drawn once per seed from [`crate::vocab`] with a ChaCha8 generator.

use armorlake_proto::feeder::Podowner;
use rand::RngCore;

use crate::vocab::{self, App, OwnerKind};

/// `below(rng, n)`: a number in `0..n` (`n > 0`). Uses only `next_u64`, so the values depend on
/// nothing but the ChaCha8 stream (stable across platforms and `rand` versions).
pub fn below(rng: &mut impl RngCore, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One element of a non-empty slice.
pub fn pick<'a, T>(rng: &mut impl RngCore, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len())]
}

/// True with probability `percent`/100.
pub fn chance(rng: &mut impl RngCore, percent: u64) -> bool {
    rng.next_u64() % 100 < percent
}

/// `len` lowercase hex digits.
pub fn hex(rng: &mut impl RngCore, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..len).map(|_| HEX[below(rng, 16)] as char).collect()
}

/// `len` characters of the alphabet Kubernetes uses for generated name suffixes.
fn kube_suffix(rng: &mut impl RngCore, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len).map(|_| *pick(rng, ALPHABET) as char).collect()
}

/// A simulated KubeArmor node.
#[derive(Clone, Debug)]
pub struct Host {
    /// `ClusterName`.
    pub cluster: String,
    /// `HostName`, `node-01`, `node-02`, ….
    pub name: String,
    /// `HostIP` (messages).
    pub ip: String,
    /// `NodeID`, 64 hex.
    pub node_id: String,
}

/// Where an event happens: a container, or the host itself (`app == None`, pod fields empty).
#[derive(Clone, Debug)]
pub struct Context {
    /// Index into [`World::hosts`].
    pub host: usize,
    /// The workload, `None` for host events.
    pub app: Option<&'static App>,
    /// `NamespaceName`.
    pub namespace: String,
    /// `PodName`.
    pub pod: String,
    /// `ContainerID`, 64 hex.
    pub container_id: String,
    /// `ContainerName`.
    pub container_name: String,
    /// `ContainerImage`, `repo:tag@sha256:…`.
    pub image: String,
    /// `Labels`, `k=v,k=v`.
    pub labels: String,
    /// `Owner`.
    pub owner: Option<Podowner>,
}

impl Context {
    /// True for host (node-level) events.
    pub fn is_host(&self) -> bool {
        self.app.is_none()
    }
}

/// All clusters, hosts and containers of one simulation.
#[derive(Clone, Debug)]
pub struct World {
    /// The nodes, `nodes` of them.
    pub hosts: Vec<Host>,
    /// Every container (one per pod).
    pub containers: Vec<Context>,
    /// One host context per node.
    pub host_contexts: Vec<Context>,
}

impl World {
    /// Draws the topology for `nodes` hosts (at least 1).
    pub fn new(rng: &mut impl RngCore, nodes: u32) -> Self {
        let nodes = nodes.max(1) as usize;
        let clusters = nodes.min(2 + below(rng, 2));
        let hosts: Vec<Host> = (0..nodes)
            .map(|i| Host {
                cluster: vocab::CLUSTERS[i % clusters].to_string(),
                name: format!("node-{:02}", i + 1),
                ip: format!("10.{}.{}.{}", 10 + i % clusters, i / 200, 10 + i % 200),
                node_id: hex(rng, 64),
            })
            .collect();
        let host_contexts = (0..nodes)
            .map(|host| Context {
                host,
                app: None,
                namespace: String::new(),
                pod: String::new(),
                container_id: String::new(),
                container_name: String::new(),
                image: String::new(),
                labels: String::new(),
                owner: None,
            })
            .collect();
        let mut containers = Vec::new();
        for cluster in 0..clusters {
            let members: Vec<usize> = (cluster..nodes).step_by(clusters).collect();
            for app in vocab::APPS {
                // Not every cluster runs every workload (kube-system and kubearmor always run).
                let essential = matches!(app.namespace, "kube-system" | "kubearmor");
                if !essential && chance(rng, 20) {
                    continue;
                }
                place(rng, app, &members, &mut containers);
            }
        }
        World {
            hosts,
            containers,
            host_contexts,
        }
    }
}

/// Creates the pods of `app` on the hosts `members` (one cluster).
fn place(rng: &mut impl RngCore, app: &'static App, members: &[usize], out: &mut Vec<Context>) {
    let digest = hex(rng, 64);
    let image = format!("{}:{}@sha256:{digest}", app.image, app.tag);
    let owner = Some(Podowner {
        r#ref: app.owner.as_str().to_string(),
        name: app.name.to_string(),
        namespace: app.namespace.to_string(),
    });
    let rs_len = 9 + below(rng, 2);
    let rs_hash = kube_suffix(rng, rs_len);
    let placements: Vec<usize> = match app.owner {
        OwnerKind::DaemonSet => members.to_vec(),
        OwnerKind::Deployment => (0..1 + below(rng, 3))
            .map(|_| *pick(rng, members))
            .collect(),
        OwnerKind::StatefulSet => (0..1 + below(rng, 2))
            .map(|_| *pick(rng, members))
            .collect(),
    };
    for (ordinal, host) in placements.into_iter().enumerate() {
        let (pod, labels) = match app.owner {
            OwnerKind::Deployment => (
                format!("{}-{rs_hash}-{}", app.name, kube_suffix(rng, 5)),
                format!(
                    "app={},pod-template-hash={rs_hash},tier={}",
                    app.name, app.tier
                ),
            ),
            OwnerKind::DaemonSet => (
                format!("{}-{}", app.name, kube_suffix(rng, 5)),
                format!("app={},tier={}", app.name, app.tier),
            ),
            OwnerKind::StatefulSet => (
                format!("{}-{ordinal}", app.name),
                format!(
                    "app={},statefulset.kubernetes.io/pod-name={}-{ordinal},tier={}",
                    app.name, app.name, app.tier
                ),
            ),
        };
        out.push(Context {
            host,
            app: Some(app),
            namespace: app.namespace.to_string(),
            pod,
            container_id: hex(rng, 64),
            container_name: app.name.to_string(),
            image: image.clone(),
            labels,
            owner: owner.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn topology_is_plausible() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let w = World::new(&mut rng, 4);
        assert_eq!(w.hosts.len(), 4);
        assert_eq!(w.hosts[0].name, "node-01");
        assert!(w.hosts.iter().all(|h| h.node_id.len() == 64));
        assert!(!w.containers.is_empty());
        for c in &w.containers {
            assert_eq!(c.container_id.len(), 64);
            assert!(c.image.contains("@sha256:"));
            assert!(c.labels.starts_with("app="));
            assert!(c.host < 4);
        }
        let one = World::new(&mut ChaCha8Rng::seed_from_u64(7), 0);
        assert_eq!(one.hosts.len(), 1);
    }
}
