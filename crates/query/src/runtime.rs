//! The runtime statements execute on, apart from the one serving connections.
//!
//! DataFusion's partition tasks are CPU-bound and seldom yield; on the connections' runtime
//! they would starve the very tasks that notice a timeout, read a cancel request or refuse
//! a client over a limit. Each front end polls a statement's futures and streams inside
//! [`QueryRuntime`]'s context ([`InRuntime`]), so whatever DataFusion spawns lands there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

/// A multi-threaded runtime for query work, shut down without waiting when dropped.
#[derive(Debug)]
pub(crate) struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    pub(crate) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("armorlake-query")
            .enable_all()
            .build()?;
        Ok(QueryRuntime(Some(runtime)))
    }

    pub(crate) fn handle(&self) -> Handle {
        match &self.0 {
            Some(r) => r.handle().clone(),
            None => Handle::current(),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.shutdown_background();
        }
    }
}

/// Polls a future inside the query runtime's context.
pub(crate) struct InRuntime<F> {
    pub(crate) runtime: Handle,
    pub(crate) work: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _inside = self.runtime.enter();
        self.work.as_mut().poll(cx)
    }
}
