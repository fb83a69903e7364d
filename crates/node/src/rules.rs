//! Alert rules on an operator: the rules follow the master's version, run on every group of
//! batches once it is acknowledged (in the WAL), and what they match is reported to the
//! master, which records the firings and merges window counts across operators.
//!
//! Window rules report every closed, non-empty window with this operator's count (the
//! engine runs them with a threshold of 0); the master applies the rule's threshold to the
//! sum over operators. A window closes when an event at or after its end arrives, or when
//! the wall clock passes its end by [`LATENESS`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armorlake_common::Table;
use armorlake_meta::{FiringReport, MetaService, WindowPart, now_micros};
use armorlake_rules::{CompiledRule, Firing, RuleEngine, RuleSpec, parse_create_rule};
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long past its end a window waits for late events before the wall clock closes it.
pub const LATENESS: Duration = Duration::from_secs(1);
/// How often the wall clock closes windows.
const TICK: Duration = Duration::from_millis(250);
/// Reports waiting for the master; beyond this they are dropped (and counted).
const QUEUE: usize = 100_000;
/// Most reports sent in one call.
const REPORT_MAX: usize = 1_000;
/// How long one watch of the master's version lasts.
const WATCH: Duration = Duration::from_secs(10);

/// The rules as written, by name, with their original window thresholds.
type Specs = BTreeMap<String, RuleSpec>;

/// The operator's rules and what they matched, waiting to be reported.
#[derive(Debug)]
pub struct RuleRunner {
    operator: String,
    engine: Mutex<(RuleEngine, Specs)>,
    active: AtomicBool,
    out: mpsc::Sender<FiringReport>,
    dropped: AtomicU64,
}

impl RuleRunner {
    /// A runner with no rules yet, and the receiving end of its reports.
    pub fn new(operator: String) -> (Arc<RuleRunner>, mpsc::Receiver<FiringReport>) {
        let (out, reports) = mpsc::channel(QUEUE);
        let runner = RuleRunner {
            operator,
            engine: Mutex::new((RuleEngine::default(), Specs::new())),
            active: AtomicBool::new(false),
            out,
            dropped: AtomicU64::new(0),
        };
        (Arc::new(runner), reports)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (RuleEngine, Specs)> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the rules on `batches` (just acknowledged) and queues what they matched.
    pub fn evaluate(&self, batches: &[(Table, RecordBatch)]) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let mut fired = Vec::new();
        {
            let mut guard = self.lock();
            let (engine, specs) = &mut *guard;
            for (table, batch) in batches {
                match engine.evaluate(*table, batch) {
                    Ok(f) => fired.extend(f.into_iter().filter_map(|f| self.report(specs, f))),
                    Err(e) => tracing::warn!(error = %e, "evaluating alert rules failed"),
                }
            }
        }
        self.queue(fired);
    }

    /// Closes the windows the wall clock has passed.
    fn close(&self, now_micros: i64) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let fired: Vec<FiringReport> = {
            let mut guard = self.lock();
            let (engine, specs) = &mut *guard;
            engine
                .close_until(now_micros)
                .into_iter()
                .filter_map(|f| self.report(specs, f))
                .collect()
        };
        self.queue(fired);
    }

    fn queue(&self, fired: Vec<FiringReport>) {
        for report in fired {
            if self.out.try_send(report).is_err() {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "alert firings dropped: the master is not taking them"
                    );
                }
            }
        }
    }

    fn report(&self, specs: &Specs, firing: Firing) -> Option<FiringReport> {
        let spec = specs.get(&firing.rule)?;
        let window = spec.window.map(|w| {
            let width = i64::try_from(w.every.as_micros()).unwrap_or(i64::MAX);
            WindowPart {
                start_micros: firing.at_micros,
                end_micros: firing.at_micros.saturating_add(width),
                count: firing.payload["count"].as_u64().unwrap_or_default(),
                more_than: w.more_than,
            }
        });
        Some(FiringReport {
            rule: firing.rule,
            operator: self.operator.clone(),
            at_micros: firing.at_micros,
            payload: firing.payload.to_string(),
            channel: spec.channel.clone(),
            webhook: spec.webhook.clone(),
            window,
        })
    }

    /// Replaces the rules with `rules` (name → statement) unless they are the ones running.
    fn replace(&self, rules: Vec<(String, String)>) {
        let mut specs = Specs::new();
        for (name, sql) in rules {
            match parse_create_rule(&sql) {
                Ok(spec) => {
                    specs.insert(name, spec);
                }
                Err(e) => tracing::warn!(rule = %name, error = %e, "alert rule skipped"),
            }
        }
        if self.lock().1 == specs {
            return;
        }
        let mut compiled = Vec::new();
        specs.retain(|name, spec| {
            // Windows report their own count, whatever it is; the master applies the
            // threshold to the sum over operators.
            let mut local = spec.clone();
            if let Some(w) = local.window.as_mut() {
                w.more_than = 0;
            }
            match CompiledRule::compile(local) {
                Ok(rule) => {
                    compiled.push(rule);
                    true
                }
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "alert rule skipped");
                    false
                }
            }
        });
        tracing::info!(rules = specs.len(), "alert rules updated");
        let mut guard = self.lock();
        self.active.store(!specs.is_empty(), Ordering::Relaxed);
        *guard = (RuleEngine::new(compiled), specs);
    }
}

/// Follows the master's rules, closes windows as time passes and reports firings, until
/// `shutdown`.
pub async fn run(
    runner: Arc<RuleRunner>,
    meta: Arc<dyn MetaService>,
    mut reports: mpsc::Receiver<FiringReport>,
    shutdown: CancellationToken,
) {
    let watcher = {
        let (runner, meta, stop) = (runner.clone(), meta.clone(), shutdown.clone());
        async move {
            let mut held = u64::MAX;
            loop {
                let version = tokio::select! {
                    _ = stop.cancelled() => return,
                    v = meta.wait_version(held, WATCH) => v,
                };
                match version {
                    Ok(v) if v != held => match meta.rules().await {
                        Ok(rules) => {
                            held = v;
                            runner.replace(rules.into_iter().map(|r| (r.name, r.sql)).collect());
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "reading alert rules failed");
                            pause(&stop, Duration::from_millis(500)).await;
                        }
                    },
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "watching the master failed");
                        pause(&stop, Duration::from_millis(500)).await;
                    }
                }
            }
        }
    };
    let clock = {
        let (runner, stop) = (runner.clone(), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(TICK);
            let lateness = i64::try_from(LATENESS.as_micros()).unwrap_or(i64::MAX);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => runner.close(now_micros().saturating_sub(lateness)),
                }
            }
        }
    };
    let reporter = async move {
        while let Some(first) = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = reports.recv() => r,
        } {
            let mut group = vec![first];
            while group.len() < REPORT_MAX {
                match reports.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = meta.report_firings(group.clone()).await {
                tracing::warn!(error = %e, "reporting alert firings failed; retrying");
                if !pause(&shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    tokio::join!(watcher, clock, reporter);
}

/// Sleeps `d`; false when `stop` came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
