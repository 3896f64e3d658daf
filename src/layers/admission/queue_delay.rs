//! The time a request spends waiting for shared resources below the admission layer (a pooled
//! store connection), carried in a task-local so that the store can report it without knowing
//! who is asking, and admission control ([`super`]) can steer by it.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

tokio::task_local! {
    static WAITED: Cell<Duration>;
}

/// Adds to the current request's queue delay; a no-op outside [`measure`] (the sweeper, start-up,
/// tests that call a service directly).
pub fn record(waited: Duration) {
    let _ = WAITED.try_with(|w| w.set(w.get() + waited));
}

/// Runs `work` and answers its output with the queue delay [`record`]ed while it ran.
pub async fn measure<F: Future>(work: F) -> (F::Output, Duration) {
    WAITED
        .scope(Cell::new(Duration::ZERO), async {
            let out = work.await;
            (out, WAITED.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_add_up_inside_a_measurement_and_are_ignored_outside() {
        record(Duration::from_millis(7));
        let ((), waited) = measure(async {
            record(Duration::from_millis(2));
            tokio::task::yield_now().await;
            record(Duration::from_millis(3));
        })
        .await;
        assert_eq!(waited, Duration::from_millis(5));
    }
}
