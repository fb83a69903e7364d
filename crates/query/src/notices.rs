//! Notices for the client: things a query wants its user to know that are not errors (an
//! operator cluster left out of a partial result). Code that runs while a statement is
//! planned or executed calls [`notice`]; the front end that runs the statement inside
//! [`collect`] sends what was gathered (pgwire as NoticeResponse messages).

use std::future::Future;
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static NOTICES: Arc<Mutex<Vec<String>>>;
}

/// Records `message` for the statement running in this task, if a front end collects them;
/// otherwise it only goes to the log.
pub fn notice(message: String) {
    tracing::warn!("{message}");
    let _ = NOTICES.try_with(|notices| {
        notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    });
}

/// Runs `statement`, returning its output and the notices it recorded.
pub async fn collect<T>(statement: impl Future<Output = T>) -> (T, Vec<String>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let output = NOTICES.scope(notices.clone(), statement).await;
    let gathered = std::mem::take(&mut *notices.lock().unwrap_or_else(|p| p.into_inner()));
    (output, gathered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notices_reach_the_statement_that_raised_them() {
        let (value, notices) = collect(async {
            notice("left out: east".into());
            7
        })
        .await;
        assert_eq!(value, 7);
        assert_eq!(notices, vec!["left out: east".to_string()]);
        // Outside a collecting statement: logged only, no panic.
        notice("nobody listens".into());
    }
}
