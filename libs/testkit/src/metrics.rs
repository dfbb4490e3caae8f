//! A herd process's `/metrics`, read with a Prometheus text-format parser
//! (the prometheus-parse crate, rather than splitting lines by hand: it
//! knows labels with spaces, histograms and summaries).

use std::io::{Read, Write};

/// One scrape of a process's `/metrics`.
pub struct Scrape(prometheus_parse::Scrape);

/// Scrapes `127.0.0.1:port/metrics`; None if nothing answers (yet) or the
/// answer is not the text format.
pub fn scrape(port: u16) -> Option<Scrape> {
    let body = text(port)?;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).ok().map(Scrape)
}

/// The body of `127.0.0.1:port/metrics` as served; None if nothing answers.
pub fn text(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

impl Scrape {
    /// A counter's, gauge's or untyped metric's value summed over its
    /// labels; 0 if it is not there.
    pub fn sum(&self, name: &str) -> f64 {
        use prometheus_parse::Value;
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// Every metric name in the scrape.
    pub fn names(&self) -> std::collections::BTreeSet<&str> {
        self.0.samples.iter().map(|s| s.metric.as_str()).collect()
    }
}

/// The value of `name` (summed over its labels) in the process's
/// `/metrics`; 0 if it is not there yet.
pub fn metric(port: u16, name: &str) -> f64 {
    scrape(port).map_or(0.0, |s| s.sum(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels_and_ignores_others() {
        let text = "# TYPE herd_x_total counter\n\
                    herd_x_total{kind=\"a b\"} 2\n\
                    herd_x_total{kind=\"c\"} 3\n\
                    herd_x_total_other 100\n\
                    # TYPE herd_g gauge\n\
                    herd_g 1.5\n";
        let s = Scrape(
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap(),
        );
        assert_eq!(s.sum("herd_x_total"), 5.0);
        assert_eq!(s.sum("herd_g"), 1.5);
        assert_eq!(s.sum("herd_missing"), 0.0);
    }
}
