//! Deterministic events: the same arguments give the same events, so a
//! producer run and a verification (or a ceiling run) agree on every row.

use std::collections::BTreeMap;

use herd_model::Event;

pub struct Generator {
    pub producer: String,
    pub series: u64,
    /// Event time of sequence number 0, ms since epoch.
    pub base_ts: i64,
    /// With a target rate (events/s) and the events per message: an event's
    /// time is when its message is scheduled to be sent, so that write time -
    /// event time is the end-to-end latency.
    pub rate: Option<(u64, u64)>,
}

impl Generator {
    pub fn event(&self, seq: u64) -> Event {
        Event {
            series: format!("series-{}", seq % self.series),
            metric: ["cpu", "mem", "disk", "net"][(seq % 4) as usize].into(),
            ts: match self.rate {
                Some((rate, per_message)) => {
                    let first = seq - seq % per_message.max(1);
                    self.base_ts + (first as i128 * 1000 / rate as i128) as i64
                }
                // 10 ms apart per series keeps timestamps distinct and recent.
                None => self.base_ts + (seq / self.series) as i64 * 10,
            },
            value: (seq % 1000) as f64 * 0.25,
            tags: BTreeMap::from([("region".to_owned(), format!("r{}", seq % 3))]),
            producer: self.producer.clone(),
            seq,
        }
    }

    pub fn events(&self, seqs: std::ops::Range<u64>) -> Vec<Event> {
        seqs.map(|s| self.event(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let g = Generator { producer: "p".into(), series: 7, base_ts: 1_700_000_000_000, rate: None };
        assert_eq!(g.event(12), g.event(12));
        for e in g.events(0..100) {
            e.validate().unwrap();
        }
        assert_eq!(g.event(8).series, "series-1");
    }
}
