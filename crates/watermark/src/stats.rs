//! Exact tail probabilities, in log space so that p-values far below 1e-300 still order
//! correctly.

/// `ln(e^a + e^b)` without overflow.
fn ln_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// `ln P(X >= s)` for `X ~ Binomial(n, p)`: the sum of the exact terms from `s` to `n`.
pub(crate) fn ln_binomial_tail(s: usize, n: usize, p: f64) -> f64 {
    if s == 0 {
        return 0.0;
    }
    if s > n {
        return f64::NEG_INFINITY;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // ln C(n, s), then each next term from the last.
    let mut ln_c = 0.0;
    for i in 1..=s {
        ln_c += ((n - s + i) as f64 / i as f64).ln();
    }
    let mut term = ln_c + s as f64 * lp + (n - s) as f64 * lq;
    let mut total = term;
    for k in s..n {
        term += ((n - k) as f64 / (k + 1) as f64).ln() + lp - lq;
        total = ln_add(total, term);
    }
    total.min(0.0)
}

/// `P(X >= s)` for `X ~ Binomial(n, p)`, exactly (up to floating-point rounding).
pub fn binomial_tail(s: usize, n: usize, p: f64) -> f64 {
    ln_binomial_tail(s, n, p).exp()
}

/// `ln P(G >= x)` for `G ~ Gamma(n, 1)`, the sum of `n` standard exponentials: the chance that
/// a Poisson(`x`) count is below `n`, `e^-x Σ_{k<n} x^k / k!`.
pub(crate) fn ln_gamma_tail(n: usize, x: f64) -> f64 {
    if x <= 0.0 || n == 0 {
        return if n == 0 { f64::NEG_INFINITY } else { 0.0 };
    }
    let lx = x.ln();
    let mut term = -x;
    let mut total = term;
    for k in 1..n {
        term += lx - (k as f64).ln();
        total = ln_add(total, term);
    }
    total.min(0.0)
}

/// `P(G >= x)` for `G ~ Gamma(n, 1)`.
pub fn gamma_tail(n: usize, x: f64) -> f64 {
    ln_gamma_tail(n, x).exp()
}

/// The Kolmogorov-Smirnov distance between a sample of p-values and the uniform distribution
/// on [0, 1]: what a test whose p-values are exact leaves near zero on text it did not mark
/// (the property tests and `bench watermark` check the detector's with it).
pub fn ks_uniform(p: &[f64]) -> f64 {
    let (excess, deficit) = ks_sides(p);
    excess.max(deficit)
}

/// The KS distance's two sides: how far small p-values are in excess of uniform (what would
/// accuse unmarked text) and in deficit (a conservative test: an exact tail of a discrete
/// statistic sits on atoms at or above where a continuous one would).
pub fn ks_sides(p: &[f64]) -> (f64, f64) {
    let mut p = p.to_vec();
    p.sort_by(f64::total_cmp);
    let n = p.len() as f64;
    p.iter()
        .enumerate()
        .fold((0.0, 0.0), |(excess, deficit), (i, &x)| {
            (
                f64::max(excess, (i + 1) as f64 / n - x),
                f64::max(deficit, x - i as f64 / n),
            )
        })
}

/// The KS distance a uniform sample of `n` exceeds with chance 0.001 (the asymptotic
/// critical value, close enough from a few dozen values on).
pub fn ks_critical(n: usize) -> f64 {
    1.949 / (n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ks_sides_tell_an_accusing_test_from_a_conservative_one() {
        let even: Vec<f64> = (0..100).map(|i| (i as f64 + 0.5) / 100.0).collect();
        assert!(ks_uniform(&even) <= 0.005 + 1e-12);
        // Too many small p-values: in excess; too few: in deficit.
        let low: Vec<f64> = even.iter().map(|p| p * 0.5).collect();
        let (excess, deficit) = ks_sides(&low);
        assert!(excess > 0.49 && deficit < 0.01, "{excess} {deficit}");
        let high: Vec<f64> = even.iter().map(|p| 0.5 + p * 0.5).collect();
        let (excess, deficit) = ks_sides(&high);
        assert!(deficit > 0.49 && excess < 0.01, "{excess} {deficit}");
        assert_eq!(ks_uniform(&high), deficit);
    }

    fn choose(n: u64, k: u64) -> f64 {
        (1..=k).fold(1.0, |c, i| c * (n - k + i) as f64 / i as f64)
    }

    #[test]
    fn the_binomial_tail_is_the_sum_of_its_terms() {
        for (n, p) in [(10usize, 0.25f64), (40, 0.5), (7, 0.9)] {
            for s in 0..=n + 1 {
                let direct: f64 = (s..=n)
                    .map(|k| {
                        choose(n as u64, k as u64)
                            * p.powi(k as i32)
                            * (1.0 - p).powi((n - k) as i32)
                    })
                    .sum();
                let got = binomial_tail(s, n, p);
                assert!(
                    (got - direct).abs() < 1e-12,
                    "n {n} s {s}: {got} vs {direct}"
                );
            }
        }
        // Far in the tail it still orders: 200 of 200 green at γ = 0.25.
        assert!((ln_binomial_tail(200, 200, 0.25) - 200.0 * 0.25f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn the_gamma_tail_matches_its_closed_forms() {
        for x in [0.1f64, 1.0, 3.5, 20.0] {
            assert!((gamma_tail(1, x) - (-x).exp()).abs() < 1e-14);
            assert!((gamma_tail(2, x) - (1.0 + x) * (-x).exp()).abs() < 1e-14);
        }
        assert_eq!(gamma_tail(5, 0.0), 1.0);
        // The median of Gamma(n, 1) is near n - 1/3.
        assert!((gamma_tail(100, 100.0 - 1.0 / 3.0) - 0.5).abs() < 0.01);
    }
}
