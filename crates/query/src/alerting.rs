//! Alerting on a query node: `CREATE ALERT RULE` / `DROP ALERT RULE` (checked here, stored
//! by the master), and LISTEN/NOTIFY delivery of firings.
//!
//! The master records every firing; [`Alerts::run_feed`] follows them (a long poll of
//! [`MetaService::wait_firings`]) and hands each one whose rule names a channel to the
//! sessions LISTENing on it, which send it as a NotificationResponse (see `pg/connection.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armorlake_meta::{Firing, MetaService, Rule, RuleStats, now_micros};
use armorlake_rules::{CompiledRule, RuleError, parse_create_rule};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long one watch of the master's firings lasts.
const WATCH: Duration = Duration::from_secs(10);

/// A notification for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The channel.
    pub channel: String,
    /// The JSON text sent.
    pub payload: String,
}

/// Why a rule statement failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The rule is refused (its SQLSTATE: [`RuleError::sqlstate`]).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The master refused or could not be reached.
    #[error(transparent)]
    Meta(#[from] armorlake_meta::Error),
}

impl AlertError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AlertError::Rule(e) => e.sqlstate(),
            AlertError::Meta(armorlake_meta::Error::RuleExists(_)) => "42710",
            AlertError::Meta(armorlake_meta::Error::UnknownRule(_)) => "42704",
            AlertError::Meta(armorlake_meta::Error::Unavailable(_)) => "08006",
            AlertError::Meta(_) => "XX000",
        }
    }
}

#[derive(Debug)]
struct Listener {
    channels: HashSet<String>,
    tx: mpsc::UnboundedSender<Notification>,
}

/// A query node's alerting state: the master, and which session listens on what.
#[derive(Debug)]
pub struct Alerts {
    meta: Arc<dyn MetaService>,
    listeners: Mutex<HashMap<u64, Listener>>,
    next: AtomicU64,
}

/// A session's registration; removed when dropped.
#[derive(Debug)]
pub struct Session {
    alerts: Arc<Alerts>,
    id: u64,
}

impl Session {
    /// Starts listening on `channel`.
    pub fn listen(&self, channel: &str) {
        if let Some(l) = self.alerts.lock().get_mut(&self.id) {
            l.channels.insert(channel.to_string());
        }
    }

    /// Stops listening on `channel`, or on every channel for `None`.
    pub fn unlisten(&self, channel: Option<&str>) {
        if let Some(l) = self.alerts.lock().get_mut(&self.id) {
            match channel {
                Some(c) => {
                    l.channels.remove(c);
                }
                None => l.channels.clear(),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.alerts.lock().remove(&self.id);
    }
}

impl Alerts {
    /// Alerting over `meta`.
    pub fn new(meta: Arc<dyn MetaService>) -> Arc<Alerts> {
        Arc::new(Alerts {
            meta,
            listeners: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Listener>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session; its notifications arrive on the receiver.
    pub fn session(self: &Arc<Self>) -> (Session, mpsc::UnboundedReceiver<Notification>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(
            id,
            Listener {
                channels: HashSet::new(),
                tx,
            },
        );
        (
            Session {
                alerts: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Checks `sql` (a `CREATE ALERT RULE` statement) against its table and stores it.
    pub async fn create_rule(&self, sql: &str) -> Result<String, AlertError> {
        let sql = sql.trim().trim_end_matches(';').trim();
        let spec = parse_create_rule(sql)?;
        let name = spec.name.clone();
        CompiledRule::compile(spec)?;
        self.meta
            .create_rule(Rule {
                name: name.clone(),
                sql: sql.to_string(),
                created_micros: now_micros(),
                stats: RuleStats::default(),
            })
            .await?;
        Ok(name)
    }

    /// Drops the rule `name`; with `if_exists`, a missing rule is no error.
    pub async fn drop_rule(&self, name: &str, if_exists: bool) -> Result<(), AlertError> {
        match self.meta.drop_rule(name).await {
            Err(armorlake_meta::Error::UnknownRule(_)) if if_exists => Ok(()),
            other => Ok(other?),
        }
    }

    fn deliver(&self, firing: &Firing) {
        let Some(channel) = &firing.channel else {
            return;
        };
        let payload = envelope(firing);
        for listener in self.lock().values() {
            if listener.channels.contains(channel) {
                let _ = listener.tx.send(Notification {
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
            }
        }
    }

    /// Follows the master's firings from now on and notifies the listening sessions,
    /// until `shutdown`.
    pub async fn run_feed(self: Arc<Self>, shutdown: CancellationToken) {
        let mut after: Option<u64> = None;
        loop {
            let wait = if after.is_some() {
                WATCH
            } else {
                Duration::ZERO
            };
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = self.meta.wait_firings(after.unwrap_or(u64::MAX), wait) => a,
            };
            match answer {
                Ok(firings) => match after {
                    None => after = Some(firings.last),
                    Some(seen) => {
                        // A master whose store was replaced numbers from 1 again.
                        let restarted = firings.last < seen;
                        for firing in &firings.firings {
                            if restarted || firing.seq > seen {
                                self.deliver(firing);
                            }
                        }
                        after = Some(firings.last);
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "following the master's firings failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }
}

/// What a listener (and a webhook) receives: the firing and its payload.
pub fn envelope(firing: &Firing) -> String {
    let payload = serde_json::from_str::<serde_json::Value>(&firing.payload)
        .unwrap_or_else(|_| serde_json::Value::String(firing.payload.clone()));
    serde_json::json!({
        "rule": firing.rule,
        "operator": firing.operator,
        "seq": firing.seq,
        "fired_at_micros": firing.fired_micros,
        "event_time_micros": firing.at_micros,
        "payload": payload,
    })
    .to_string()
}
