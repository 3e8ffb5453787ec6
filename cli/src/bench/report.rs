//! A run's figures as a text table and as JSON. The JSON carries every
//! figure and each histogram in HdrHistogram's interchange form (V2,
//! compressed, base64: the "HISTFAAA..." strings HdrHistogram's tools read).

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde_json::{Value, json};

use super::pace::Pace;
use super::record::{OpStats, Recorder};
use super::run::{Energy, Phase};

/// Latency figures of one histogram, in microseconds.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "min": h.min(), "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999), "max": h.max(),
    })
}

/// The histogram in HdrHistogram's compressed V2 form, base64-encoded.
pub fn histogram_base64(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn op_json(s: &OpStats, seconds: f64) -> Value {
    json!({
        "ops": s.latency.len(),
        "ops_in_window": s.in_window,
        "ops_per_s": s.in_window as f64 / seconds,
        "latency_us": latency_json(&s.latency),
        "errors": s.errors,
        "failed_latency_us": latency_json(&s.failed_latency),
        "histogram": histogram_base64(&s.latency),
    })
}

pub fn pace_json(p: Pace) -> Value {
    match p {
        Pace::ClosedLoop => json!({"kind": "closed_loop"}),
        Pace::FixedRate(r) => json!({"kind": "fixed_rate", "ops_per_s": r, "latency_from": "intended send time"}),
    }
}

pub fn energy_json(e: &Energy, ops: u64) -> Value {
    match e {
        Energy::Measured { joules, zones } => json!({
            "readable": true, "joules": joules, "zones": zones,
            "ops_per_joule": if *joules > 0.0 { Some(ops as f64 / joules) } else { None },
            "covers": "the whole CPU package: cluster and load generator",
        }),
        Energy::Unreadable(reason) => json!({"readable": false, "reason": reason}),
    }
}

fn errors_by_kind(r: &Recorder) -> serde_json::Map<String, Value> {
    let mut all = serde_json::Map::new();
    for s in r.ops().values() {
        for (k, n) in &s.errors {
            let v = all.entry(k.clone()).or_insert(json!(0));
            *v = json!(v.as_u64().unwrap_or(0) + n);
        }
    }
    all
}

/// Every figure of one phase.
pub fn phase_json(p: &Phase) -> Value {
    let r = &p.recorder;
    let ops: serde_json::Map<String, Value> =
        r.ops().iter().map(|(k, s)| (k.name().to_owned(), op_json(s, p.seconds))).collect();
    json!({
        "clients": p.clients,
        "threads": p.threads,
        "pace": pace_json(p.pace),
        "seconds": p.seconds,
        "drain_seconds": p.drain_seconds,
        "ops": r.succeeded(),
        "ops_in_window": r.succeeded_in_window(),
        "ops_per_s": p.ops_per_second(),
        "errors": r.failed(),
        "errors_by_kind": errors_by_kind(r),
        "unsent": r.unsent(),
        "latency_us": latency_json(&r.overall()),
        "operations": ops,
        "energy": energy_json(&p.energy, r.succeeded()),
        "batches": {
            "sent": p.batches.batches,
            "requests": p.batches.requests,
            "requests_per_batch": requests_per_batch(p),
        },
    })
}

/// Mean requests per batch the SDK sent, if it sent any.
fn requests_per_batch(p: &Phase) -> Option<f64> {
    (p.batches.batches > 0).then(|| p.batches.requests as f64 / p.batches.batches as f64)
}

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One phase as a table: a row per operation type and one for all.
pub fn phase_text(p: &Phase) -> String {
    let r = &p.recorder;
    let pace = match p.pace {
        Pace::ClosedLoop => "closed loop".to_owned(),
        Pace::FixedRate(rate) => format!("fixed rate {rate:.0} ops/s, latency from intended send"),
    };
    let mut out = format!(
        "{} clients on {} threads, {pace}, {:.1} s: {:.0} ops/s\n",
        p.clients,
        p.threads,
        p.seconds,
        p.ops_per_second()
    );
    out += &format!(
        "  {:<8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "op", "ops", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let row = |name: &str, h: &Histogram<u64>, in_window: u64, errors: String| {
        let q = |x| if h.is_empty() { "-".to_owned() } else { ms(h.value_at_quantile(x)) };
        format!(
            "  {:<8} {:>10} {:>10.0} {:>9} {:>9} {:>9} {:>9}  {}\n",
            name,
            h.len(),
            in_window as f64 / p.seconds,
            q(0.5),
            q(0.99),
            q(0.999),
            if h.is_empty() { "-".to_owned() } else { ms(h.max()) },
            errors
        )
    };
    let errs = |e: &std::collections::BTreeMap<String, u64>| {
        if e.is_empty() {
            "0".to_owned()
        } else {
            e.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" ")
        }
    };
    for (k, s) in r.ops() {
        out += &row(k.name(), &s.latency, s.in_window, errs(&s.errors));
    }
    if r.ops().len() > 1 {
        let all: std::collections::BTreeMap<String, u64> =
            errors_by_kind(r).into_iter().map(|(k, v)| (k, v.as_u64().unwrap_or(0))).collect();
        out += &row("all", &r.overall(), r.succeeded_in_window(), errs(&all));
    }
    if let Some(per) = requests_per_batch(p) {
        out += &format!("  {} batches sent, {per:.1} requests each\n", p.batches.batches);
    }
    if r.unsent() > 0 {
        out += &format!("  {} operations due were never sent: the clients could not keep the rate\n", r.unsent());
    }
    out += &match &p.energy {
        Energy::Measured { joules, .. } if *joules > 0.0 => {
            format!("  energy: {joules:.1} J (RAPL, whole package), {:.0} ops/J\n", r.succeeded() as f64 / joules)
        }
        Energy::Measured { .. } => "  energy: the RAPL counters did not move\n".to_owned(),
        Energy::Unreadable(reason) => format!("  energy: RAPL counters not readable ({reason})\n"),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::OpKind;
    use hdrhistogram::serialization::Deserializer;
    use std::time::Duration;

    #[test]
    fn a_phase_reports_every_figure_and_histograms_that_decode() {
        let mut rec = Recorder::default();
        for us in [100u64, 250, 900, 12_000] {
            rec.record(OpKind::Read, Duration::from_micros(us), true, Ok(()));
        }
        rec.record(OpKind::Update, Duration::from_micros(300), true, Ok(()));
        rec.record(OpKind::Update, Duration::from_micros(300), false, Ok(()));
        rec.record(OpKind::Update, Duration::ZERO, true, Err("timeout".into()));
        let p = Phase {
            clients: 4,
            threads: 2,
            pace: Pace::ClosedLoop,
            seconds: 2.0,
            drain_seconds: 0.1,
            recorder: rec,
            energy: Energy::Unreadable("no RAPL".into()),
            batches: wimpy_client::BatchStats { batches: 2, requests: 5 },
        };
        let j = phase_json(&p);
        assert_eq!((j["ops"].as_u64(), j["ops_in_window"].as_u64()), (Some(6), Some(5)));
        assert_eq!(j["ops_per_s"], 2.5, "answers after the end count for latency, not throughput");
        assert_eq!(j["errors_by_kind"]["timeout"], 1);
        assert_eq!(j["operations"]["read"]["latency_us"]["p50"], 250);
        assert_eq!(j["energy"]["readable"], false);
        assert_eq!(j["batches"]["requests_per_batch"], 2.5);
        let encoded = j["operations"]["read"]["histogram"].as_str().unwrap();
        assert!(encoded.starts_with("HISTFAAA"), "{encoded}");
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
        assert_eq!((h.len(), h.value_at_quantile(1.0) / 1000), (4, 12));
        let text = phase_text(&p);
        assert!(text.contains("read") && text.contains("timeout=1") && text.contains("not readable"), "{text}");
    }
}
