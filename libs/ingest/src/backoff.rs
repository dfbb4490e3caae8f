//! Exponential backoff with full jitter: a uniformly random delay between
//! zero and `min(max, initial * 2^attempt)`. Jitter keeps workers that failed
//! together from retrying together.

use std::time::Duration;

/// `unit` is a random number in [0, 1).
pub fn delay(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling =
        initial.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(5));
        let top = |a| delay(a, i, m, 0.999_999);
        assert!(top(0) <= i && top(0) > i.mul_f64(0.99));
        assert!(top(1) > Duration::from_millis(199) && top(1) <= Duration::from_millis(200));
        assert!(top(5) <= Duration::from_millis(3200));
        assert!(top(6) <= m && top(40) <= m, "capped");
        assert_eq!(delay(3, i, m, 0.0), Duration::ZERO, "full jitter starts at zero");
        assert_eq!(delay(u32::MAX, i, m, 0.5), m / 2, "no overflow");
    }
}
