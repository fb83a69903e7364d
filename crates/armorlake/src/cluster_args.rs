//! The flags of node-to-node security, the same for `master`, `operator` and `query`.

use std::path::PathBuf;

use armorlake_node::{ClusterSecurity, ClusterTls};

use crate::config::ClusterFile;
use crate::layer::Layer;

/// How this node and its peers authenticate each other: mutual TLS with a cluster CA, a
/// shared token, or both. Give every node of a cluster the same settings.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The cluster CA (PEM) that every node's certificate is signed by; turns on mutual TLS
    /// between nodes (with --cluster-cert and --cluster-key).
    #[arg(long, env = "ARMORLAKE_CLUSTER_CA", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM), signed by the cluster CA: its server certificate
    /// and the client certificate it shows other nodes.
    #[arg(long, env = "ARMORLAKE_CLUSTER_CERT", value_name = "FILE")]
    pub cluster_cert: Option<PathBuf>,
    /// This node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ARMORLAKE_CLUSTER_KEY", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// The name servers' certificates are checked against (default: the host dialled).
    #[arg(long, env = "ARMORLAKE_CLUSTER_TLS_DOMAIN", value_name = "NAME")]
    pub cluster_tls_domain: Option<String>,
    /// A shared secret every node sends (`authorization: Bearer …`) and requires. Prefer
    /// the environment variable or the file: flags show in the process list.
    #[arg(
        long,
        env = "ARMORLAKE_CLUSTER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub cluster_token: Option<String>,
}

impl ClusterArgs {
    /// Layers the `[cluster]` section over these.
    pub fn layer(&mut self, file: ClusterFile, layer: &Layer<'_>) {
        layer.set_opt(&mut self.cluster_ca, "cluster_ca", file.ca);
        layer.set_opt(&mut self.cluster_cert, "cluster_cert", file.cert);
        layer.set_opt(&mut self.cluster_key, "cluster_key", file.key);
        layer.set_opt(
            &mut self.cluster_tls_domain,
            "cluster_tls_domain",
            file.tls_domain,
        );
        layer.set_opt(&mut self.cluster_token, "cluster_token", file.token);
    }

    /// The security these options ask for, with the PEM files read and checked.
    pub fn security(&self) -> Result<ClusterSecurity, String> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("reading {flag} {}: {e}", path.display()))
        };
        let tls = match (&self.cluster_ca, &self.cluster_cert, &self.cluster_key) {
            (None, None, None) => {
                if self.cluster_tls_domain.is_some() {
                    return Err("--cluster-tls-domain needs --cluster-ca".into());
                }
                None
            }
            (Some(ca), Some(cert), Some(key)) => Some(
                ClusterTls::from_pem(
                    read("--cluster-ca", ca)?,
                    read("--cluster-cert", cert)?,
                    read("--cluster-key", key)?,
                    self.cluster_tls_domain.clone(),
                )
                .map_err(|e| e.to_string())?,
            ),
            _ => {
                return Err(
                    "mutual TLS between nodes needs all of --cluster-ca, --cluster-cert and \
                     --cluster-key"
                        .into(),
                );
            }
        };
        ClusterSecurity::new(tls, self.cluster_token.clone()).map_err(|e| e.to_string())
    }
}
