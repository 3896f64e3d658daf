//! The time a request spends waiting for shared resources below the admission layer (a pooled
//! store connection), carried in a task-local so that the store can report it without knowing
//! who is asking, and admission control ([`super`]) can steer by it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

tokio::task_local! {
    static WAITED: Cell<Duration>;
}

/// Adds to the current request's queue delay; a no-op outside [`scope`] (the sweeper, start-up,
/// tests that call a service directly).
pub fn record(waited: Duration) {
    let _ = WAITED.try_with(|w| w.set(w.get() + waited));
}

/// `work` with a queue delay of its own: what [`record`] adds while it runs, read back with
/// [`waited`] once it is done.
pub fn scope<F: Future>(work: F) -> Measured<F> {
    WAITED.scope(Cell::new(Duration::ZERO), work)
}

/// A future run by [`scope`].
pub type Measured<F> = tokio::task::futures::TaskLocalFuture<Cell<Duration>, F>;

/// The queue delay a [`scope`]d future recorded; call it once, after the future finished (it
/// takes the value out).
pub fn waited<F: Future>(work: Pin<&mut Measured<F>>) -> Duration {
    work.take_value().map_or(Duration::ZERO, |w| w.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_add_up_inside_a_measurement_and_are_ignored_outside() {
        record(Duration::from_millis(7));
        let mut work = std::pin::pin!(scope(async {
            record(Duration::from_millis(2));
            tokio::task::yield_now().await;
            record(Duration::from_millis(3));
        }));
        work.as_mut().await;
        assert_eq!(waited(work.as_mut()), Duration::from_millis(5));
    }
}
