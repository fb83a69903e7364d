//! Alert rules and firings in [`StoredMeta`].
//!
//! | key | value |
//! |---|---|
//! | `rule/<name>` | `Rule`: the statement and its counters |
//! | `firing/<seq, 20 digits>` | `Firing` (the newest [`KEPT_FIRINGS`] are kept) |
//! | `firing_seq` | u64, big-endian: the newest firing's number |
//!
//! Creating and dropping a rule bump the metadata version (operators and query nodes
//! follow it); firings and counters do not, they have their own sequence, watched through
//! [`MetaService::wait_firings`](crate::MetaService::wait_firings).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use armorlake_proto::meta as pb;
use prost::Message;

use super::{State, StoredMeta, decode, key};
use crate::kv::{KvStore, WriteBatch};
use crate::{Error, Firing, FiringReport, Firings, Result, Rule, now_micros};

pub(super) const RULE: &str = "rule/";
pub(super) const FIRING: &str = "firing/";
pub(super) const FIRING_SEQ: &[u8] = b"firing_seq";

/// How many firings the master keeps (the oldest go first).
pub const KEPT_FIRINGS: usize = 10_000;
/// How many windows (rule × window start) the master merges at once; the oldest go first.
const KEPT_WINDOWS: usize = 10_000;

/// A window of a window rule, merged across the operators that reported it.
#[derive(Debug, Default)]
pub(super) struct MergedWindow {
    count: u64,
    operators: BTreeSet<String>,
    fired: bool,
}

/// The alerting part of the master's state.
#[derive(Debug, Default)]
pub(super) struct Alerting {
    pub(super) rules: BTreeMap<String, Rule>,
    pub(super) firings: std::collections::VecDeque<Firing>,
    pub(super) last_firing: u64,
    windows: BTreeMap<(String, i64), MergedWindow>,
}

fn firing_key(seq: u64) -> Vec<u8> {
    format!("{FIRING}{seq:020}").into_bytes()
}

/// Loads rules and firings from `store` into `state`.
pub(super) async fn load<S: KvStore>(store: &S, state: &mut State) -> Result<()> {
    for (k, v) in store.scan_prefix(RULE.as_bytes()).await? {
        let rule: Rule = decode::<pb::Rule, _>(&k, &v)?;
        state.alerting.rules.insert(rule.name.clone(), rule);
    }
    for (k, v) in store.scan_prefix(FIRING.as_bytes()).await? {
        let firing: Firing = decode::<pb::Firing, _>(&k, &v)?;
        state.alerting.last_firing = state.alerting.last_firing.max(firing.seq);
        state.alerting.firings.push_back(firing);
    }
    state
        .alerting
        .firings
        .make_contiguous()
        .sort_by_key(|f| f.seq);
    if let Some(bytes) = store.get(FIRING_SEQ).await? {
        let seq = <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Invalid("record firing_seq".into()))?;
        state.alerting.last_firing = state.alerting.last_firing.max(seq);
    }
    Ok(())
}

impl<S: KvStore> StoredMeta<S> {
    pub(super) async fn create_rule_stored(&self, rule: Rule) -> Result<()> {
        let writer = self.writer.lock().await;
        if self.read().alerting.rules.contains_key(&rule.name) {
            return Err(Error::RuleExists(rule.name));
        }
        let mut batch = WriteBatch::new();
        batch.put(
            key(RULE, &rule.name),
            pb::Rule::from(rule.clone()).encode_to_vec(),
        );
        tracing::info!(rule = %rule.name, "alert rule created");
        self.commit(&writer, batch, |state| {
            state.alerting.rules.insert(rule.name.clone(), rule);
        })
        .await
    }

    pub(super) async fn drop_rule_stored(&self, name: &str) -> Result<()> {
        let writer = self.writer.lock().await;
        if !self.read().alerting.rules.contains_key(name) {
            return Err(Error::UnknownRule(name.to_string()));
        }
        let mut batch = WriteBatch::new();
        batch.delete(key(RULE, name));
        tracing::info!(rule = %name, "alert rule dropped");
        self.commit(&writer, batch, |state| {
            state.alerting.rules.remove(name);
            state.alerting.windows.retain(|(rule, _), _| rule != name);
        })
        .await
    }

    pub(super) async fn report_firings_stored(&self, reports: Vec<FiringReport>) -> Result<()> {
        let _writer = self.writer.lock().await;
        let now = now_micros();
        let (mut seq, mut rules) = {
            let state = self.read();
            (state.alerting.last_firing, state.alerting.rules.clone())
        };
        let mut recorded = Vec::new();
        {
            // Window merging is memory only; decided under the lock, then written.
            let mut state = self.write();
            for report in reports {
                let Some(rule) = rules.get_mut(&report.rule) else {
                    // Dropped since the operator evaluated it.
                    continue;
                };
                let (operator, payload) = match report.window {
                    None => (report.operator.clone(), report.payload.clone()),
                    Some(part) => {
                        let merged = state
                            .alerting
                            .windows
                            .entry((report.rule.clone(), part.start_micros))
                            .or_default();
                        merged.count += part.count;
                        merged.operators.insert(report.operator.clone());
                        if merged.fired || merged.count <= part.more_than {
                            continue;
                        }
                        merged.fired = true;
                        let operators: Vec<String> = merged.operators.iter().cloned().collect();
                        let payload = serde_json::json!({
                            "rule": report.rule,
                            "window_start": micros_text(part.start_micros),
                            "window_end": micros_text(part.end_micros),
                            "count": merged.count,
                            "operators": operators,
                        });
                        (operators.join(","), payload.to_string())
                    }
                };
                seq += 1;
                rule.stats.firings += 1;
                rule.stats.last_fired_micros = Some(now);
                recorded.push(Firing {
                    seq,
                    rule: report.rule,
                    operator,
                    fired_micros: now,
                    at_micros: report.at_micros,
                    payload,
                    channel: report.channel,
                    webhook: report.webhook,
                });
            }
            while state.alerting.windows.len() > KEPT_WINDOWS {
                state.alerting.windows.pop_first();
            }
        }
        if recorded.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        let mut fired_rules = BTreeSet::new();
        for firing in &recorded {
            fired_rules.insert(firing.rule.clone());
            batch.put(
                firing_key(firing.seq),
                pb::Firing::from(firing.clone()).encode_to_vec(),
            );
        }
        for name in &fired_rules {
            if let Some(rule) = rules.get(name) {
                batch.put(
                    key(RULE, name),
                    pb::Rule::from(rule.clone()).encode_to_vec(),
                );
            }
        }
        let (kept, first) = {
            let state = self.read();
            (
                state.alerting.firings.len(),
                state.alerting.firings.front().map(|f| f.seq),
            )
        };
        let excess = (kept + recorded.len()).saturating_sub(KEPT_FIRINGS);
        if let Some(first) = first {
            for old in first..first + excess as u64 {
                batch.delete(firing_key(old));
            }
        }
        batch.put(FIRING_SEQ, seq.to_be_bytes().to_vec());
        self.store.write(batch).await?;
        {
            let mut state = self.write();
            for name in &fired_rules {
                if let (Some(stored), Some(updated)) =
                    (state.alerting.rules.get_mut(name), rules.get(name))
                {
                    stored.stats.firings = updated.stats.firings;
                    stored.stats.last_fired_micros = updated.stats.last_fired_micros;
                }
            }
            state.alerting.firings.extend(recorded);
            while state.alerting.firings.len() > KEPT_FIRINGS {
                state.alerting.firings.pop_front();
            }
            state.alerting.last_firing = seq;
        }
        self.firing_seq.send_replace(seq);
        Ok(())
    }

    pub(super) async fn wait_firings_stored(
        &self,
        after: u64,
        timeout: Duration,
    ) -> Result<Firings> {
        let mut changes = self.firing_seq.subscribe();
        let _ = tokio::time::timeout(timeout, changes.wait_for(|v| *v > after)).await;
        let state = self.read();
        Ok(Firings {
            firings: state
                .alerting
                .firings
                .iter()
                .filter(|f| f.seq > after)
                .cloned()
                .collect(),
            last: state.alerting.last_firing,
        })
    }

    pub(super) async fn record_delivery_stored(
        &self,
        name: &str,
        delivered: bool,
        failed_attempts: u64,
    ) -> Result<()> {
        let _writer = self.writer.lock().await;
        let Some(mut rule) = self.read().alerting.rules.get(name).cloned() else {
            return Err(Error::UnknownRule(name.to_string()));
        };
        rule.stats.failures += failed_attempts;
        if delivered {
            rule.stats.deliveries += 1;
        } else {
            rule.stats.dead_letters += 1;
        }
        let mut batch = WriteBatch::new();
        batch.put(
            key(RULE, name),
            pb::Rule::from(rule.clone()).encode_to_vec(),
        );
        self.store.write(batch).await?;
        if let Some(stored) = self.write().alerting.rules.get_mut(name) {
            stored.stats.deliveries = rule.stats.deliveries;
            stored.stats.failures = rule.stats.failures;
            stored.stats.dead_letters = rule.stats.dead_letters;
        }
        Ok(())
    }
}

/// `micros` as an RFC 3339 UTC time.
fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryMeta, MetaService, RuleStats, WindowPart};

    fn rule(name: &str) -> Rule {
        Rule {
            name: name.into(),
            sql: format!("CREATE ALERT RULE {name} ON alerts WHERE true"),
            created_micros: 1,
            stats: RuleStats::default(),
        }
    }

    fn part(operator: &str, start: i64, count: u64) -> FiringReport {
        FiringReport {
            rule: "w".into(),
            operator: operator.into(),
            at_micros: start,
            payload: "{}".into(),
            channel: Some("c".into()),
            webhook: None,
            window: Some(WindowPart {
                start_micros: start,
                end_micros: start + 10,
                count,
                more_than: 5,
            }),
        }
    }

    #[tokio::test]
    async fn rules_are_unique_and_bump_the_version() {
        let meta = MemoryMeta::new();
        let v = meta.version().await.unwrap();
        meta.create_rule(rule("a")).await.unwrap();
        assert!(meta.version().await.unwrap() > v);
        assert!(matches!(
            meta.create_rule(rule("a")).await,
            Err(Error::RuleExists(_))
        ));
        meta.drop_rule("a").await.unwrap();
        assert!(matches!(
            meta.drop_rule("a").await,
            Err(Error::UnknownRule(_))
        ));
        assert!(meta.rules().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn windows_merge_across_operators_and_fire_once() {
        let meta = MemoryMeta::new();
        meta.create_rule(rule("w")).await.unwrap();
        // 3 + 2 is not above 5; + 4 is, once; further counts never fire again.
        meta.report_firings(vec![part("op1", 0, 3), part("op2", 0, 2)])
            .await
            .unwrap();
        assert_eq!(meta.wait_firings(0, Duration::ZERO).await.unwrap().last, 0);
        meta.report_firings(vec![
            part("op3", 0, 4),
            part("op1", 0, 9),
            part("op1", 10, 1),
        ])
        .await
        .unwrap();
        let firings = meta.wait_firings(0, Duration::ZERO).await.unwrap();
        assert_eq!(firings.firings.len(), 1);
        assert_eq!(firings.firings[0].operator, "op1,op2,op3");
        let payload: serde_json::Value = serde_json::from_str(&firings.firings[0].payload).unwrap();
        assert_eq!(payload["count"], 9);
        assert_eq!(meta.rules().await.unwrap()[0].stats.firings, 1);
    }

    #[tokio::test]
    async fn firings_wake_waiters_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = std::sync::Arc::new(StoredMeta::open_dir(dir.path()).await.unwrap());
            meta.create_rule(rule("p")).await.unwrap();
            let waiter = {
                let meta = meta.clone();
                tokio::spawn(async move { meta.wait_firings(0, Duration::from_secs(30)).await })
            };
            let report = FiringReport {
                window: None,
                rule: "p".into(),
                ..part("op1", 7, 0)
            };
            meta.report_firings(vec![report.clone(), report])
                .await
                .unwrap();
            let woke = waiter.await.unwrap().unwrap();
            assert!(!woke.firings.is_empty());
            meta.record_delivery("p", true, 2).await.unwrap();
            meta.record_delivery("p", false, 5).await.unwrap();
        }
        let meta = StoredMeta::open_dir(dir.path()).await.unwrap();
        let firings = meta.wait_firings(1, Duration::ZERO).await.unwrap();
        assert_eq!(firings.last, 2);
        assert_eq!(firings.firings.len(), 1);
        assert_eq!(firings.firings[0].seq, 2);
        let stats = &meta.rules().await.unwrap()[0].stats;
        assert_eq!(
            (
                stats.firings,
                stats.deliveries,
                stats.failures,
                stats.dead_letters
            ),
            (2, 1, 7, 1)
        );
    }
}
