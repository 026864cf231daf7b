//! Bounded waits on a real condition: poll until it holds or the time is up, and on timeout fail
//! with the last evidence seen, so that a red check says what the node looked like.

use std::thread;
use std::time::{Duration, Instant};

use crate::{Failure, Result};

/// Pause between two polls: short enough to keep checks quick, long enough not to load guests.
const INTERVAL: Duration = Duration::from_millis(500);

/// Calls `f` until it returns `Ok(Some(value))`, for at most `timeout` (at least once).
///
/// `Ok(None)` means "not yet"; `Err(failure)` also means "not yet, and here is why" (see
/// [`pending`]): it is kept as evidence. On timeout the error is `timed out after Ns waiting for:
/// WHAT` with the last evidence.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if e.message.is_empty() => last = e.evidence,
            Err(e) => last = e.to_string(),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                format!("timed out after {}s waiting for: {what}", timeout.as_secs()),
                last,
            ));
        }
        thread::sleep(INTERVAL.min(left));
    }
}

/// "Not yet" with evidence, for a [`wait_for`] closure: `return pending(out.combined())`.
pub fn pending<T>(evidence: impl Into<String>) -> Result<Option<T>> {
    Err(Failure::new("", evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(10), || {
            n += 1;
            Ok((n >= 3).then_some(n))
        });
        assert_eq!(v, Ok(3));
    }

    #[test]
    fn timeout_carries_the_last_evidence() {
        let mut n = 0;
        let start = Instant::now();
        let err = wait_for::<()>("never", Duration::from_millis(1200), || {
            n += 1;
            pending(format!("attempt {n}"))
        })
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(1200));
        assert_eq!(err.message, "timed out after 1s waiting for: never");
        assert_eq!(err.evidence, format!("attempt {n}"));
        assert!(n >= 2);
    }

    #[test]
    fn a_failure_with_a_message_is_evidence_too() {
        let err = wait_for::<()>("x", Duration::ZERO, || {
            crate::fail("psql failed", "ERROR: boom")
        })
        .unwrap_err();
        assert_eq!(err.evidence, "psql failed\nERROR: boom");
    }
}
