//! Reading a histogram out of a Prometheus text exposition (`/metrics`), enough for
//! the workers' `handoff_latency_seconds` (commit of a transition → first claim by
//! the next service).

use std::collections::BTreeMap;

/// One histogram series: cumulative buckets, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`, ascending `le` (the last is `+Inf`).
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Histogram {
    /// What was observed between the scrape `before` and this one.
    pub fn minus(&self, before: Option<&Histogram>) -> Histogram {
        let Some(before) = before else {
            return self.clone();
        };
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n - earlier(*le)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// Mean observation, if any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The upper bound of the bucket holding quantile `q` (0–1): the quantile is at most this.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let wanted = q * self.count;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= wanted)
            .map(|(le, _)| *le)
    }
}

/// Parses `k="v",k="v"` (quoted values may hold `,`, `{`, `}` and `\"`) up to the
/// closing `}`; returns the pairs and the text after the `}`.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((pairs, after));
        }
        let (key, after_key) = rest.split_once('=')?;
        let mut chars = after_key.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.trim().to_owned(), value));
        rest = &after_key[1 + end + 1..];
    }
}

/// Splits `name{labels} value` into the labels (without `le`), the `le` value and the value.
fn parse_line(line: &str, series: &str) -> Option<(String, Option<f64>, f64)> {
    let rest = line.strip_prefix(series)?;
    let (pairs, value) = if let Some(inner) = rest.strip_prefix('{') {
        parse_labels(inner)?
    } else if rest.starts_with(' ') {
        (Vec::new(), rest)
    } else {
        return None;
    };
    let value: f64 = value.split_whitespace().next()?.parse().ok()?;
    let mut le = None;
    let mut kept = Vec::new();
    for (k, v) in pairs {
        if k == "le" {
            le = Some(v.parse().ok()?);
        } else {
            kept.push(format!("{k}={v}"));
        }
    }
    Some((kept.join(","), le, value))
}

/// Every series of the histogram `name` in `text`, by label set (without `le`).
pub fn parse_histograms(text: &str, name: &str) -> BTreeMap<String, Histogram> {
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((labels, Some(le), v)) = parse_line(line, &bucket) {
            out.entry(labels).or_default().buckets.push((le, v));
        } else if let Some((labels, _, v)) = parse_line(line, &sum) {
            out.entry(labels).or_default().sum = v;
        } else if let Some((labels, _, v)) = parse_line(line, &count) {
            out.entry(labels).or_default().count = v;
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Fetches a `/metrics` page.
pub async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = http.get(url).send().await?.error_for_status()?;
    Ok(response.text().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE handoff_latency_seconds histogram
handoff_latency_seconds_bucket{state="risk_assessment",le="0.005"} 1
handoff_latency_seconds_bucket{state="risk_assessment",le="0.01"} 6
handoff_latency_seconds_bucket{state="risk_assessment",le="0.1"} 9
handoff_latency_seconds_bucket{state="risk_assessment",le="+Inf"} 10
handoff_latency_seconds_sum{state="risk_assessment"} 0.5
handoff_latency_seconds_count{state="risk_assessment"} 10
handoff_latency_seconds_bucket_other 3
http_request_duration_seconds_bucket{method="GET",route="/v1/cases/{case_id}",status="200",le="0.01"} 7
http_request_duration_seconds_bucket{method="GET",route="/v1/cases/{case_id}",status="200",le="+Inf"} 8
http_request_duration_seconds_sum{method="GET",route="/v1/cases/{case_id}",status="200"} 0.2
http_request_duration_seconds_count{method="GET",route="/v1/cases/{case_id}",status="200"} 8
http_request_duration_seconds_count{method="GET",route="/a,b\"c}",status="200"} 1
worker_claims_total{service="risk-assessment",state="risk_assessment"} 10
"#;

    #[test]
    fn reads_buckets_sum_and_count_per_label_set() {
        let all = parse_histograms(PAGE, "handoff_latency_seconds");
        assert_eq!(all.len(), 1);
        let h = &all["state=risk_assessment"];
        assert_eq!(h.count, 10.0);
        assert_eq!(h.sum, 0.5);
        assert_eq!(h.buckets.len(), 4);
        assert_eq!(h.buckets[3], (f64::INFINITY, 10.0));
        assert_eq!(h.mean(), Some(0.05));
        assert_eq!(h.quantile_bound(0.5), Some(0.01));
        assert_eq!(h.quantile_bound(0.95), Some(f64::INFINITY));
        assert_eq!(h.quantile_bound(0.9), Some(0.1));
    }

    #[test]
    fn label_values_may_hold_braces_commas_and_quotes() {
        let all = parse_histograms(PAGE, "http_request_duration_seconds");
        let h = &all["method=GET,route=/v1/cases/{case_id},status=200"];
        assert_eq!((h.count, h.buckets.len()), (8.0, 2));
        assert_eq!(h.quantile_bound(0.5), Some(0.01));
        assert_eq!(all["method=GET,route=/a,b\"c},status=200"].count, 1.0);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn the_difference_of_two_scrapes_is_what_happened_in_between() {
        let before = parse_histograms(PAGE, "handoff_latency_seconds");
        let after_page = PAGE.replace("} 10\n", "} 14\n").replace("0.5", "0.9");
        let after = parse_histograms(&after_page, "handoff_latency_seconds");
        let key = "state=risk_assessment";
        let d = after[key].minus(before.get(key));
        assert_eq!(d.count, 4.0);
        assert!((d.sum - 0.4).abs() < 1e-9);
        assert_eq!(d.buckets[3], (f64::INFINITY, 4.0));
        assert_eq!(d.buckets[0], (0.005, 0.0));
        assert_eq!(after[key].minus(None), after[key]);
    }
}
