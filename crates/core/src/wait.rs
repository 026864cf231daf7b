//! Bounded waits on a real condition: poll, and on timeout say what was awaited and the last
//! thing observed. Never a bare sleep as synchronisation.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Polls `probe` every `every` until it returns `Ok(Ok(value))`, for at most `timeout`.
/// `Ok(Err(observation))` means "not yet" and is kept for the timeout message; `Err` aborts.
///
/// Errors: [`Error::Timeout`] with `what` and the last observation, or the probe's error.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match probe()? {
            Ok(v) => return Ok(v),
            Err(obs) => obs,
        };
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs(),
                last,
            });
        }
        std::thread::sleep(every.min(timeout.saturating_sub(start.elapsed())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_value_or_times_out_with_last_observation() {
        let mut n = 0;
        let v = until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                Ok(if n >= 3 { Ok(n) } else { Err(format!("n={n}")) })
            },
        )
        .unwrap();
        assert_eq!(v, 3);
        let e = until::<()>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || Ok(Err("still no".into())),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("waiting for never; last observation: still no"),
            "{e}"
        );
    }
}
