//! Alert rules and their firings, as the master keeps them.
//!
//! A rule is kept as the `CREATE ALERT RULE` statement its user wrote; the roles that run
//! or show it parse it with `armorlake-rules`. Operators report what their rules matched
//! ([`FiringReport`]); the master turns reports into [`Firing`]s, numbered in the order it
//! records them, and merges the per-operator counts of a window rule's window (see
//! `docs/alerting.md`).

use armorlake_proto::meta as pb;

use crate::{Error, Result};

/// Counters of a rule, kept by the master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Times it fired.
    pub firings: u64,
    /// Webhook POSTs that succeeded.
    pub deliveries: u64,
    /// Webhook attempts that failed (each retry counts).
    pub failures: u64,
    /// Firings whose webhook was given up on after every retry.
    pub dead_letters: u64,
    /// Wall-clock time of its last firing, microseconds since the epoch.
    pub last_fired_micros: Option<i64>,
}

/// An alert rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its unique name.
    pub name: String,
    /// The `CREATE ALERT RULE` statement.
    pub sql: String,
    /// When it was created, microseconds since the epoch.
    pub created_micros: i64,
    /// Its counters.
    pub stats: RuleStats,
}

/// One operator's count of one closed window of a window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPart {
    /// Window start, microseconds since the epoch.
    pub start_micros: i64,
    /// Window end (exclusive).
    pub end_micros: i64,
    /// Matching events this operator saw in it.
    pub count: u64,
    /// The rule's threshold: the merged window fires when the sum exceeds it.
    pub more_than: u64,
}

/// What an operator reports when a rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringReport {
    /// The rule.
    pub rule: String,
    /// The reporting operator.
    pub operator: String,
    /// Event time (a window's start for window rules), microseconds.
    pub at_micros: i64,
    /// JSON: the event.
    pub payload: String,
    /// The rule's LISTEN/NOTIFY channel.
    pub channel: Option<String>,
    /// The rule's webhook URL.
    pub webhook: Option<String>,
    /// Set for a window rule: the operator's count of a closed window.
    pub window: Option<WindowPart>,
}

/// A recorded firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// Its number: firings are numbered from 1 in the order the master records them.
    pub seq: u64,
    /// The rule.
    pub rule: String,
    /// The operator whose event fired it; for a window merged across operators, their ids
    /// joined by commas.
    pub operator: String,
    /// When the master recorded it, microseconds since the epoch.
    pub fired_micros: i64,
    /// Event time (a window's start), microseconds.
    pub at_micros: i64,
    /// JSON: the event, or the window (`rule`, `window_start`, `window_end`, `count`).
    pub payload: String,
    /// The channel it is NOTIFYed on.
    pub channel: Option<String>,
    /// The URL it is POSTed to.
    pub webhook: Option<String>,
}

/// Firings after some sequence number, and the newest recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firings {
    /// The firings, oldest first.
    pub firings: Vec<Firing>,
    /// The newest sequence number recorded (0: none yet).
    pub last: u64,
}

impl From<RuleStats> for pb::RuleStats {
    fn from(s: RuleStats) -> pb::RuleStats {
        pb::RuleStats {
            firings: s.firings,
            deliveries: s.deliveries,
            failures: s.failures,
            dead_letters: s.dead_letters,
            last_fired_micros: s.last_fired_micros,
        }
    }
}

impl From<pb::RuleStats> for RuleStats {
    fn from(s: pb::RuleStats) -> RuleStats {
        RuleStats {
            firings: s.firings,
            deliveries: s.deliveries,
            failures: s.failures,
            dead_letters: s.dead_letters,
            last_fired_micros: s.last_fired_micros,
        }
    }
}

impl From<Rule> for pb::Rule {
    fn from(r: Rule) -> pb::Rule {
        pb::Rule {
            name: r.name,
            sql: r.sql,
            created_micros: r.created_micros,
            stats: Some(r.stats.into()),
        }
    }
}

impl TryFrom<pb::Rule> for Rule {
    type Error = Error;

    fn try_from(r: pb::Rule) -> Result<Rule> {
        if r.name.is_empty() {
            return Err(Error::Invalid("a rule without a name".into()));
        }
        Ok(Rule {
            name: r.name,
            sql: r.sql,
            created_micros: r.created_micros,
            stats: r.stats.unwrap_or_default().into(),
        })
    }
}

impl From<WindowPart> for pb::WindowPart {
    fn from(w: WindowPart) -> pb::WindowPart {
        pb::WindowPart {
            start_micros: w.start_micros,
            end_micros: w.end_micros,
            count: w.count,
            more_than: w.more_than,
        }
    }
}

impl From<pb::WindowPart> for WindowPart {
    fn from(w: pb::WindowPart) -> WindowPart {
        WindowPart {
            start_micros: w.start_micros,
            end_micros: w.end_micros,
            count: w.count,
            more_than: w.more_than,
        }
    }
}

impl From<FiringReport> for pb::FiringReport {
    fn from(f: FiringReport) -> pb::FiringReport {
        pb::FiringReport {
            rule: f.rule,
            operator: f.operator,
            at_micros: f.at_micros,
            payload: f.payload,
            channel: f.channel,
            webhook: f.webhook,
            window: f.window.map(Into::into),
        }
    }
}

impl TryFrom<pb::FiringReport> for FiringReport {
    type Error = Error;

    fn try_from(f: pb::FiringReport) -> Result<FiringReport> {
        Ok(FiringReport {
            rule: f.rule,
            operator: f.operator,
            at_micros: f.at_micros,
            payload: f.payload,
            channel: f.channel,
            webhook: f.webhook,
            window: f.window.map(Into::into),
        })
    }
}

impl From<Firing> for pb::Firing {
    fn from(f: Firing) -> pb::Firing {
        pb::Firing {
            seq: f.seq,
            rule: f.rule,
            operator: f.operator,
            fired_micros: f.fired_micros,
            at_micros: f.at_micros,
            payload: f.payload,
            channel: f.channel,
            webhook: f.webhook,
        }
    }
}

impl TryFrom<pb::Firing> for Firing {
    type Error = Error;

    fn try_from(f: pb::Firing) -> Result<Firing> {
        Ok(Firing {
            seq: f.seq,
            rule: f.rule,
            operator: f.operator,
            fired_micros: f.fired_micros,
            at_micros: f.at_micros,
            payload: f.payload,
            channel: f.channel,
            webhook: f.webhook,
        })
    }
}
