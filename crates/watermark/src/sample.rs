//! The plain sampler the marks are measured against: softmax with a temperature, nucleus
//! (top-p) truncation, and an inverse-CDF draw from a uniform the caller supplies.

/// Probabilities of `logits` at `temperature` (0 or less: all mass on the largest logit).
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    if logits.is_empty() {
        return Vec::new();
    }
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if temperature <= 0.0 {
        let best = logits.iter().position(|&l| l == top).unwrap_or(0);
        let mut p = vec![0.0; logits.len()];
        p[best] = 1.0;
        return p;
    }
    let mut p: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - top) / temperature).exp())
        .collect();
    let sum: f32 = p.iter().sum();
    for x in &mut p {
        *x /= sum;
    }
    p
}

/// Keeps the smallest set of most likely tokens whose mass reaches `p` and renormalises
/// (`p` of 1 or more keeps everything).
pub fn top_p(probs: &mut [f32], p: f32) {
    if p >= 1.0 || probs.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut mass = 0.0;
    let mut kept = order.len();
    for (i, &t) in order.iter().enumerate() {
        mass += probs[t];
        if mass >= p {
            kept = i + 1;
            break;
        }
    }
    for &t in &order[kept..] {
        probs[t] = 0.0;
    }
    let sum: f32 = probs.iter().sum();
    if sum > 0.0 {
        for x in probs.iter_mut() {
            *x /= sum;
        }
    }
}

/// The token at `u` (in [0, 1)) of the cumulative distribution of `probs`.
pub fn sample_plain(probs: &[f32], u: f64) -> u32 {
    let mut acc = 0.0f64;
    let mut last = 0u32;
    for (t, &p) in probs.iter().enumerate() {
        if p <= 0.0 {
            continue;
        }
        acc += f64::from(p);
        last = t as u32;
        if u < acc {
            return last;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_top_p_and_the_draw() {
        let p = softmax(&[2.0, 1.0, 0.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1] && p[1] > p[2]);
        assert_eq!(softmax(&[0.0, 3.0, 1.0], 0.0), vec![0.0, 1.0, 0.0]);
        let mut q = vec![0.5, 0.3, 0.2];
        top_p(&mut q, 0.7);
        assert_eq!(q[2], 0.0);
        assert!((q[0] - 0.625).abs() < 1e-6);
        assert_eq!(sample_plain(&[0.5, 0.3, 0.2], 0.0), 0);
        assert_eq!(sample_plain(&[0.5, 0.3, 0.2], 0.6), 1);
        assert_eq!(sample_plain(&[0.5, 0.3, 0.2], 0.999_999), 2);
        assert_eq!(sample_plain(&[0.0, 1.0, 0.0], 0.5), 1);
    }
}
