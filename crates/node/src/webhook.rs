//! Webhook delivery, run by the master: every recorded firing of a rule with a `WEBHOOK`
//! is POSTed to the rule's URL (the JSON LISTEN receives too, as `application/json`). A
//! failed attempt (no connection, timeout, non-2xx answer) is retried with exponential
//! backoff; after [`ATTEMPTS`] attempts the firing is a dead letter. Outcomes are counted
//! in the rule's counters (`armorlake.rules`).

use std::sync::Arc;
use std::time::Duration;

use armorlake_meta::{Firing, MetaService};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Attempts per firing before it is a dead letter.
pub const ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled before each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;
/// How long one watch of the firings lasts.
const WATCH: Duration = Duration::from_secs(10);

/// Delivers the webhooks of firings recorded from now on, until `shutdown`.
pub async fn run(meta: Arc<dyn MetaService>, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("armorlake/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks disabled: cannot build an HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut after = None;
    loop {
        let wait = match after {
            None => Duration::ZERO,
            Some(_) => WATCH,
        };
        let firings = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = meta.wait_firings(after.unwrap_or(u64::MAX), wait) => f,
        };
        let firings = match firings {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "reading firings failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        // The first read only learns where the firings stand.
        let Some(seen) = after else {
            after = Some(firings.last);
            continue;
        };
        after = Some(
            firings
                .firings
                .iter()
                .map(|f| f.seq)
                .max()
                .unwrap_or(seen)
                .max(seen),
        );
        for firing in firings.firings {
            let Some(url) = firing.webhook.clone() else {
                continue;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (client, meta, stop) = (client.clone(), meta.clone(), shutdown.clone());
            tokio::spawn(async move {
                deliver(&client, meta.as_ref(), &url, &firing, &stop).await;
                drop(slot);
            });
        }
    }
}

/// POSTs `firing` to `url` until it succeeds or [`ATTEMPTS`] attempts failed, and counts
/// the outcome.
async fn deliver(
    client: &reqwest::Client,
    meta: &dyn MetaService,
    url: &str,
    firing: &Firing,
    stop: &CancellationToken,
) {
    let mut failed = 0u64;
    let mut backoff = FIRST_BACKOFF;
    let delivered = loop {
        let attempt = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Armorlake-Rule", firing.rule.as_str())
            .header("X-Armorlake-Firing", firing.seq.to_string())
            .body(armorlake_query::alerting::envelope(firing))
            .send()
            .await;
        match attempt {
            Ok(response) if response.status().is_success() => break true,
            Ok(response) => {
                tracing::debug!(rule = %firing.rule, status = %response.status(), "webhook refused")
            }
            Err(e) => tracing::debug!(rule = %firing.rule, error = %e, "webhook failed"),
        }
        failed += 1;
        if failed >= u64::from(ATTEMPTS) {
            tracing::warn!(rule = %firing.rule, url, "webhook given up: dead letter");
            break false;
        }
        tokio::select! {
            _ = stop.cancelled() => break false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff *= 2;
    };
    if let Err(e) = meta.record_delivery(&firing.rule, delivered, failed).await {
        tracing::debug!(rule = %firing.rule, error = %e, "counting a webhook delivery failed");
    }
}
