//! Reported statistics match a brute-force computation on seeded random latencies: percentiles
//! within HdrHistogram's 3-digit precision, exact count/min/max/mean/stddev, buckets that sum up.

use std::time::Duration;

use ketch_loadgen::stats::{OpStats, REPORT_PERCENTILES};
use rand::{Rng, SeedableRng};

mod common;

/// Nearest-rank percentile of sorted values.
fn brute_percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn check(seed: u64, n: usize, draw: impl Fn(&mut rand::rngs::StdRng) -> u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stats = OpStats::default();
    let mut us: Vec<u64> = (0..n).map(|_| draw(&mut rng)).collect();
    for &v in &us {
        stats.record(Duration::from_micros(v), Ok(()));
    }
    stats.record(Duration::from_millis(1), Err("boom".into()));
    us.sort_unstable();
    let s = stats.summary("op", Duration::from_secs(2));
    assert_eq!(s.requests, n as u64);
    assert_eq!(s.errors, 1);
    assert_eq!(s.error_table["boom"], 1);
    assert!((s.requests_per_s - n as f64 / 2.0).abs() < 1e-6);
    assert!((s.fastest_s - us[0] as f64 / 1e6).abs() < 1e-12);
    assert!((s.slowest_s - us[n - 1] as f64 / 1e6).abs() < 1e-12);
    let mean = us.iter().sum::<u64>() as f64 / n as f64;
    let var = us.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        (s.average_s * 1e6 - mean).abs() < 1e-6 * mean.max(1.0),
        "mean {} vs {mean}",
        s.average_s * 1e6
    );
    assert!(
        (s.stddev_s * 1e6 - var.sqrt()).abs() < 1e-4 * var.sqrt().max(1.0),
        "stddev {} vs {}",
        s.stddev_s * 1e6,
        var.sqrt()
    );
    for p in REPORT_PERCENTILES {
        let want = brute_percentile(&us, p) as f64;
        let got = s.percentile_s(p).unwrap() * 1e6;
        // HdrHistogram reports the top of the value's bucket (capped at the exact maximum):
        // never below, at most 0.1% above.
        assert!(
            got >= want - 1e-6 && got <= want * 1.001 + 1.0,
            "p{p}: got {got} us, brute force {want} us (seed {seed})"
        );
    }
    assert!(s.percentiles.iter().all(|p| p.seconds <= s.slowest_s));
    assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), n as u64);
    assert!(s.histogram.windows(2).all(|w| w[0].upper_s < w[1].upper_s));
}

#[test]
fn percentiles_match_brute_force_uniform() {
    let seed = common::seed();
    check(seed, 100_000, |r| r.random_range(50..20_000));
}

#[test]
fn percentiles_match_brute_force_long_tail() {
    let seed = common::seed();
    // Log-uniform from 10 us to 10 s: exercises many HdrHistogram buckets and the tail.
    check(seed, 50_000, |r| {
        10f64.powf(r.random_range(1.0..7.0)) as u64
    });
}
