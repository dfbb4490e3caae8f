//! Open-loop send schedule: when the n-th event is due, for a target rate
//! reached by a linear ramp. Pure, so that a run's timing is exactly known.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Target events/s, after the ramp.
    pub rate: f64,
    /// Events/s at the start of the ramp.
    pub ramp_from: f64,
    /// Length of the ramp, seconds (0: the target rate from the start).
    pub ramp_secs: f64,
}

impl Schedule {
    pub fn new(rate: u64, ramp_from: u64, ramp_secs: f64) -> Result<Schedule, String> {
        if rate == 0 {
            return Err("a schedule needs --rate above 0".into());
        }
        if !(ramp_secs.is_finite() && ramp_secs >= 0.0) {
            return Err(format!(
                "--ramp-secs {ramp_secs}: expected a number of seconds, 0 or more"
            ));
        }
        if ramp_from > rate {
            return Err(format!("--ramp-from {ramp_from} is above --rate {rate}: the ramp goes up to the target rate"));
        }
        if ramp_secs > 0.0 && ramp_from == 0 && ramp_secs * rate as f64 / 2.0 < 1.0 {
            return Err(format!(
                "--ramp-secs {ramp_secs} at --rate {rate} would send nothing during the ramp"
            ));
        }
        Ok(Schedule { rate: rate as f64, ramp_from: ramp_from as f64, ramp_secs })
    }

    /// Events sent during the ramp.
    fn ramp_events(&self) -> f64 {
        (self.ramp_from + self.rate) / 2.0 * self.ramp_secs
    }

    /// When event `n` (counting from 0) is due, from the start of the run.
    pub fn due(&self, n: u64) -> Duration {
        let n = n as f64;
        let secs = if n < self.ramp_events() {
            // n = r0 t + a t^2 / 2 with a = (r - r0) / T, solved for t >= 0.
            let a = (self.rate - self.ramp_from) / self.ramp_secs;
            if a == 0.0 {
                n / self.ramp_from
            } else {
                (-self.ramp_from + (self.ramp_from * self.ramp_from + 2.0 * a * n).sqrt()) / a
            }
        } else {
            self.ramp_secs + (n - self.ramp_events()) / self.rate
        };
        Duration::from_secs_f64(secs)
    }

    /// How many events a run of `secs` seconds sends.
    pub fn events_in(&self, secs: f64) -> u64 {
        let events = if secs <= self.ramp_secs {
            let a = (self.rate - self.ramp_from) / self.ramp_secs.max(f64::MIN_POSITIVE);
            self.ramp_from * secs + a * secs * secs / 2.0
        } else {
            self.ramp_events() + (secs - self.ramp_secs) * self.rate
        };
        events.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn flat_rate() {
        let s = Schedule::new(1000, 0, 0.0).unwrap();
        assert_eq!(secs(s.due(0)), 0.0);
        assert!((secs(s.due(1500)) - 1.5).abs() < 1e-9);
        assert_eq!(s.events_in(10.0), 10_000);
    }

    #[test]
    fn linear_ramp_then_flat() {
        // 0 -> 1000/s over 10 s: 5,000 events in the ramp, 2,500 by 5 s (a quarter of the rate).
        let s = Schedule::new(1000, 0, 10.0).unwrap();
        assert!((secs(s.due(1250)) - 5.0).abs() < 1e-9, "{:?}", s.due(1250));
        assert!((secs(s.due(5000)) - 10.0).abs() < 1e-9);
        assert!((secs(s.due(6000)) - 11.0).abs() < 1e-9);
        assert_eq!(s.events_in(10.0), 5000);
        assert_eq!(s.events_in(12.0), 7000);
        // The rate over the ramp's second half is three times the first half's.
        let first = s.events_in(5.0);
        assert_eq!((first, s.events_in(10.0) - first), (1250, 3750));
        // Due times never go back.
        let mut last = Duration::ZERO;
        for n in 0..7000 {
            assert!(s.due(n) >= last);
            last = s.due(n);
        }
    }

    #[test]
    fn ramp_from_a_floor_and_bad_input() {
        let s = Schedule::new(3000, 1000, 2.0).unwrap();
        assert_eq!(s.events_in(2.0), 4000);
        assert!((secs(s.due(4000)) - 2.0).abs() < 1e-9);
        assert!(
            (secs(s.due(1000)) - (-1000.0 + (1e6f64 + 2.0 * 1000.0 * 1000.0).sqrt()) / 1000.0)
                .abs()
                < 1e-9
        );
        let flat_ramp = Schedule::new(1000, 1000, 5.0).unwrap();
        assert!((secs(flat_ramp.due(2500)) - 2.5).abs() < 1e-9);
        assert!(Schedule::new(0, 0, 0.0).is_err());
        assert!(Schedule::new(100, 200, 1.0).unwrap_err().contains("above --rate"));
        assert!(Schedule::new(100, 0, -1.0).is_err());
        assert!(Schedule::new(100, 0, f64::NAN).is_err());
    }
}
