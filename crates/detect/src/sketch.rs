//! Fixed-size sketches that keep per-account state bounded whatever the account's volume.

use serde::{Deserialize, Serialize};

/// Serde for fixed-size arrays of any length (serde derives them only up to 32): written as a
/// sequence, read back with its length checked.
mod fixed {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(
        a: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| D::Error::invalid_length(len, &format!("{N} elements").as_str()))
    }
}

/// Mixes a 64-bit value into a well-spread hash (SplitMix64 finaliser). Deterministic across
/// runs and machines, unlike `std`'s randomly seeded hasher, so verdicts replay exactly.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hashes bytes (FNV-1a, then a final mix).
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// HyperLogLog distinct counter with `M` one-byte registers (`M` a power of two).
/// The relative error is about `1.04 / sqrt(M)`: 13 % at 64 registers, 6.5 % at 256; linear
/// counting keeps small counts close to exact.
///
/// Scoring reads the estimate after every exchange, so the sum of `2^-register` and the count
/// of empty registers are kept up to date on insert instead of being recomputed over all
/// registers: an estimate costs the same at 256 registers as at 32. The sum is kept exactly,
/// as an integer, so the estimate does not depend on the order of inserts or merges.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Registers<M>", into = "Registers<M>")]
pub struct Hll<const M: usize> {
    registers: [u8; M],
    /// Σ 2^(RANK_SPAN - r) over the non-empty registers; exact, and below 2^63.
    filled_sum: u64,
    zeros: u16,
}

/// What a saved [`Hll`] keeps: its registers; the kept sum and count of empty registers are
/// derived again when it is read back, so a saved sketch cannot contradict itself.
/// Written as one byte string (a copy, where formats allow), not a sequence of numbers.
struct Registers<const M: usize>([u8; M]);

impl<const M: usize> Serialize for Registers<M> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, const M: usize> Deserialize<'de> for Registers<M> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<const M: usize>;
        impl<'de, const M: usize> serde::de::Visitor<'de> for Bytes<M> {
            type Value = Registers<M>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "{M} register bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into()
                    .map(Registers)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut registers = [0u8; M];
                for (i, r) in registers.iter_mut().enumerate() {
                    *r = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Registers(registers))
            }
        }
        d.deserialize_bytes(Bytes::<M>)
    }
}

impl<const M: usize> From<Registers<M>> for Hll<M> {
    fn from(saved: Registers<M>) -> Self {
        let mut h = Self::default();
        for (i, &rank) in saved.0.iter().enumerate() {
            h.set(i, rank.min(Self::RANK_SPAN as u8));
        }
        h
    }
}

impl<const M: usize> From<Hll<M>> for Registers<M> {
    fn from(h: Hll<M>) -> Self {
        Registers(h.registers)
    }
}

impl<const M: usize> Default for Hll<M> {
    fn default() -> Self {
        Self {
            registers: [0; M],
            filled_sum: 0,
            zeros: M as u16,
        }
    }
}

impl<const M: usize> Hll<M> {
    const BITS: u32 = M.trailing_zeros();
    /// The highest rank a register can hold.
    const RANK_SPAN: u32 = 64 - Self::BITS;

    #[inline]
    fn weight(rank: u8) -> u64 {
        1u64 << (Self::RANK_SPAN - u32::from(rank))
    }

    #[inline]
    fn set(&mut self, index: usize, rank: u8) {
        let old = self.registers[index];
        if rank <= old {
            return;
        }
        if old == 0 {
            self.zeros -= 1;
        } else {
            self.filled_sum -= Self::weight(old);
        }
        self.filled_sum += Self::weight(rank);
        self.registers[index] = rank;
    }

    pub fn insert(&mut self, hash: u64) {
        let index = (hash & (M as u64 - 1)) as usize;
        let rest = hash >> Self::BITS;
        let rank = (rest.trailing_zeros().min(63 - Self::BITS) + 1) as u8;
        self.set(index, rank);
    }

    /// Folds another sketch in: the union of both sets.
    pub fn merge(&mut self, other: &Self) {
        for (i, &rank) in other.registers.iter().enumerate() {
            self.set(i, rank);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = M as f64;
        let zeros = f64::from(self.zeros);
        if self.zeros > 0 {
            let linear = m * (m / zeros).ln();
            if linear <= 2.5 * m {
                return linear;
            }
        }
        let alpha = match M {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        // Σ 2^-r: empty registers count 1 each, the rest are the kept integer sum scaled down.
        let sum = zeros + self.filled_sum as f64 / 2f64.powi(Self::RANK_SPAN as i32);
        alpha * m * m / sum
    }
}

/// Misra–Gries heavy hitters over hashes with `K` counters: any value seen in more than
/// `n / (K + 1)` of `n` inserts is kept, and its count is under-estimated by at most that.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeavyHitters<const K: usize> {
    #[serde(with = "fixed")]
    keys: [u64; K],
    #[serde(with = "fixed")]
    counts: [u32; K],
}

impl<const K: usize> Default for HeavyHitters<K> {
    fn default() -> Self {
        Self {
            keys: [0; K],
            counts: [0; K],
        }
    }
}

impl<const K: usize> HeavyHitters<K> {
    pub fn insert(&mut self, key: u64) {
        self.insert_n(key, 1);
    }

    /// Counts `key` `n` times at once (the weighted form of the same summary).
    pub fn insert_n(&mut self, key: u64, n: u32) {
        if let Some(i) = (0..K).find(|&i| self.counts[i] > 0 && self.keys[i] == key) {
            self.counts[i] = self.counts[i].saturating_add(n);
        } else if let Some(i) = (0..K).find(|&i| self.counts[i] == 0) {
            self.keys[i] = key;
            self.counts[i] = n;
        } else {
            let least = self.counts.iter().copied().min().unwrap_or(0);
            let d = least.min(n);
            for c in &mut self.counts {
                *c -= d;
            }
            if n > d {
                self.insert_n(key, n - d);
            }
        }
    }

    /// The (lower-bound) count of `key`: 0 when it is not among the kept.
    pub fn count(&self, key: u64) -> u32 {
        (0..K)
            .find(|&i| self.counts[i] > 0 && self.keys[i] == key)
            .map_or(0, |i| self.counts[i])
    }

    /// Folds another summary in (Agarwal et al.'s mergeable summaries): add counts, then
    /// subtract the (K+1)-th largest and keep what stays positive.
    pub fn merge(&mut self, other: &Self) {
        let mut all: Vec<(u64, u32)> = Vec::with_capacity(2 * K);
        for (k, c) in self
            .keys
            .iter()
            .zip(self.counts.iter())
            .chain(other.keys.iter().zip(other.counts.iter()))
        {
            if *c == 0 {
                continue;
            }
            match all.iter_mut().find(|e| e.0 == *k) {
                Some(e) => e.1 = e.1.saturating_add(*c),
                None => all.push((*k, *c)),
            }
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let cut = all.get(K).map_or(0, |e| e.1);
        *self = Self::default();
        for (i, (k, c)) in all.into_iter().take(K).enumerate() {
            if c > cut {
                self.keys[i] = k;
                self.counts[i] = c - cut;
            }
        }
    }

    /// The most frequent key and its (lower-bound) count.
    pub fn top(&self) -> Option<(u64, u32)> {
        (0..K)
            .filter(|&i| self.counts[i] > 0)
            .map(|i| (self.keys[i], self.counts[i]))
            .max_by_key(|&(_, c)| c)
    }

    pub fn top_count(&self) -> u32 {
        self.top().map_or(0, |(_, c)| c)
    }
}

/// Slots of [`Recurring`].
const RECURRING_SLOTS: usize = 4;
/// Items a recurring value is followed over before its share is read.
const RECURRING_TRIAL: u16 = 16;
/// A followed value carried by less than this share of the items since it was taken up may
/// give its slot to a new one.
const RECURRING_KEEP_SHARE: f64 = 0.2;
/// Items a reference item is held for at most (see [`Recurring`]).
const RECURRING_REFERENCE_ITEMS: u8 = 8;

/// The share of items (prompts) that carry one of a few recurring values (a wrapper's
/// fragments) among `V` values each, where most values of most items never recur.
///
/// A Misra–Gries summary fails here: each item brings several values, nearly all seen once,
/// and every new one wears down the counters of the few that recur. Instead a value is taken
/// up when an item carries a value of a *reference* item held for comparison, and from then
/// on counted exactly: in how many of the items since it was taken up it appears. An item
/// already carrying a followed value takes nothing up (one wrapper fills one slot, not one
/// per window of it) and never becomes the reference; the reference is the latest item that
/// carried none, kept for up to [`RECURRING_REFERENCE_ITEMS`] items, so wrappers taken in
/// turn, one after another, are each found (a lookback of one item would never find one of
/// several wrappers used round-robin). Deterministic and bounded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recurring<const V: usize> {
    /// (value, items carrying it, items since it was taken up); value 0 is an empty slot.
    /// Both counts are halved together when the second would overflow, keeping the share.
    slots: [(u16, u16, u16); RECURRING_SLOTS],
    /// Items seen.
    items: u32,
    /// The reference item's values, and how many items it has been held for.
    #[serde(with = "fixed")]
    reference: [u16; V],
    held: u8,
}

impl<const V: usize> Default for Recurring<V> {
    fn default() -> Self {
        Self {
            slots: [(0, 0, 0); RECURRING_SLOTS],
            items: 0,
            reference: [0; V],
            held: 0,
        }
    }
}

impl<const V: usize> Recurring<V> {
    /// Takes one item and its values (0s are no value).
    pub fn observe(&mut self, values: &[u16; V]) {
        self.items = self.items.saturating_add(1);
        let mut carried = false;
        for slot in self.slots.iter_mut().filter(|s| s.0 != 0) {
            if slot.2 == u16::MAX {
                slot.1 /= 2;
                slot.2 /= 2;
            }
            slot.2 += 1;
            if values.contains(&slot.0) {
                slot.1 += 1;
                carried = true;
            }
        }
        if carried {
            return;
        }
        let found = values
            .iter()
            .copied()
            .find(|&v| v != 0 && self.reference.contains(&v));
        if let Some(v) = found {
            if let Some(i) = self.free_slot() {
                // Counted from the next item on: this one and the reference were chosen for
                // carrying it, and would bias the share up.
                self.slots[i] = (v, 0, 0);
                self.reference = [0; V];
                self.held = 0;
                return;
            }
        }
        if self.held == 0 || self.held >= RECURRING_REFERENCE_ITEMS {
            self.reference = *values;
            self.held = 1;
        } else {
            self.held += 1;
        }
    }

    /// The share of the items since a slot's value was taken up that carried it, once it has
    /// had its trial of [`RECURRING_TRIAL`] items (None before).
    fn tried_share(&(value, n, of): &(u16, u16, u16)) -> Option<f64> {
        (value != 0 && of >= RECURRING_TRIAL).then(|| f64::from(n) / f64::from(of))
    }

    /// An empty slot, or the one whose value recurs least once it has had its trial and
    /// recurs in less than [`RECURRING_KEEP_SHARE`] of its items.
    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.0 == 0).or_else(|| {
            (0..RECURRING_SLOTS)
                .filter_map(|i| Some((i, Self::tried_share(&self.slots[i])?)))
                .filter(|&(_, share)| share < RECURRING_KEEP_SHARE)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        })
    }

    /// The share of items carrying a followed value that recurs in at least
    /// [`RECURRING_KEEP_SHARE`] of the items since it was taken up (each followed for at least
    /// [`RECURRING_TRIAL`] items), summed over such values (a few wrappers taken in turn are
    /// one manufactured prompt set; an item carries one wrapper, so they rarely overlap), at
    /// most 1. 0 when none is.
    pub fn share(&self) -> f64 {
        self.slots
            .iter()
            .filter_map(Self::tried_share)
            .filter(|&share| share >= RECURRING_KEEP_SHARE)
            .sum::<f64>()
            .min(1.0)
    }

    /// Folds another stream's summary in. A value followed on one side only is counted as
    /// absent from every item of the other (it may have been there unseen: the share can only
    /// be under-estimated); the most carried values keep the slots.
    pub fn merge(&mut self, o: &Self) {
        let widen = |s: &(u16, u16, u16)| (s.0, u32::from(s.1), u32::from(s.2));
        let mut all: Vec<(u16, u32, u32)> = Vec::with_capacity(2 * RECURRING_SLOTS);
        for s in self.slots.iter().filter(|s| s.0 != 0).map(widen) {
            all.push((s.0, s.1, s.2.saturating_add(o.items)));
        }
        for s in o.slots.iter().filter(|s| s.0 != 0).map(widen) {
            match all.iter_mut().find(|e| e.0 == s.0) {
                Some(e) => {
                    e.1 = e.1.saturating_add(s.1);
                    e.2 = e.2.saturating_sub(o.items).saturating_add(s.2);
                }
                None => all.push((s.0, s.1, s.2.saturating_add(self.items))),
            }
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.slots = [(0, 0, 0); RECURRING_SLOTS];
        for (slot, (v, mut n, mut of)) in self.slots.iter_mut().zip(all) {
            while of > u32::from(u16::MAX) {
                n /= 2;
                of /= 2;
            }
            *slot = (v, n as u16, of as u16);
        }
        self.items = self.items.saturating_add(o.items);
        if self.held == 0 {
            self.reference = o.reference;
            self.held = o.held;
        }
    }
}

/// Counts over `N` fixed bins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram<const N: usize>(#[serde(with = "fixed")] pub [u32; N]);

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> Histogram<N> {
    pub fn add(&mut self, bin: usize) {
        self.0[bin % N] = self.0[bin % N].saturating_add(1);
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }
}

/// Shannon entropy of a histogram, normalised by the largest entropy its sample size allows
/// (`ln min(n, bins)`), so that small samples are not penalised for not filling every bin.
pub fn normalised_entropy(hist: &[u32]) -> f64 {
    let n: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if n < 2 {
        return 0.0;
    }
    let n_f = n as f64;
    let h: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n_f;
            -p * p.ln()
        })
        .sum();
    let max = (n.min(hist.len() as u64) as f64).ln();
    if max <= 0.0 {
        0.0
    } else {
        (h / max).clamp(0.0, 1.0)
    }
}

/// Running mean and variance (Welford), for inter-arrival regularity.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Moments {
    pub n: u32,
    pub mean: f64,
    m2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.n = self.n.saturating_add(1);
        let d = x - self.mean;
        self.mean += d / f64::from(self.n);
        self.m2 += d * (x - self.mean);
    }

    /// Combines two sets of moments (Chan et al.'s parallel formula): the pooled moments that
    /// [`Moments::merge_streams`] is measured against in the tests.
    #[cfg(test)]
    pub fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (f64::from(self.n), f64::from(other.n));
        let n = na + nb;
        let d = other.mean - self.mean;
        self.mean += d * nb / n;
        self.m2 += other.m2 + d * d * na * nb / n;
        self.n = self.n.saturating_add(other.n);
    }

    /// Combines the gaps of two streams into the gaps of the stream they make together, which
    /// pooled moments (Chan et al.'s parallel formula) are not: two accounts taking turns, each calling
    /// every 185 s like clockwork, make a stream with a call every 92 s, as regular as each.
    /// The order of the calls is gone, so this is an estimate. Streams that ran at the same
    /// time (`concurrent`) add their rates, streams one after the other keep their mean gap;
    /// the spread is the members' relative spread (coefficients of variation, weighted by
    /// their gaps), so random streams are random together, paced ones interleaved stay paced
    /// and bursty ones stay bursty.
    pub fn merge_streams(&mut self, other: &Self, concurrent: bool) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (f64::from(self.n), f64::from(other.n));
        let cv = (self.cv() * na + other.cv() * nb) / (na + nb);
        let mean = if concurrent && self.mean > 0.0 && other.mean > 0.0 {
            1.0 / (1.0 / self.mean + 1.0 / other.mean)
        } else {
            (self.mean * na + other.mean * nb) / (na + nb)
        };
        self.n = self.n.saturating_add(other.n).saturating_add(1);
        self.mean = mean;
        self.m2 = (cv * mean).powi(2) * f64::from(self.n - 1);
    }

    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / f64::from(self.n - 1)
        }
    }

    /// Coefficient of variation (standard deviation over mean).
    pub fn cv(&self) -> f64 {
        if self.mean <= 0.0 {
            0.0
        } else {
            self.variance().sqrt() / self.mean
        }
    }
}

/// Running means, variances and covariance of pairs (Welford, merged with Chan et al.'s
/// formula), for how closely one quantity tracks another. The univariate [`Moments`] beside
/// it keep the same layout, so a group's merged state is computed the same way.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct CoMoments {
    pub n: u32,
    mean_x: f64,
    mean_y: f64,
    m2_x: f64,
    m2_y: f64,
    co: f64,
}

impl CoMoments {
    pub fn push(&mut self, x: f64, y: f64) {
        self.n = self.n.saturating_add(1);
        let n = f64::from(self.n);
        let dx = x - self.mean_x;
        self.mean_x += dx / n;
        let dy = y - self.mean_y;
        self.mean_y += dy / n;
        self.m2_x += dx * (x - self.mean_x);
        self.m2_y += dy * (y - self.mean_y);
        self.co += dx * (y - self.mean_y);
    }

    pub fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (f64::from(self.n), f64::from(other.n));
        let n = na + nb;
        let dx = other.mean_x - self.mean_x;
        let dy = other.mean_y - self.mean_y;
        self.mean_x += dx * nb / n;
        self.mean_y += dy * nb / n;
        self.m2_x += other.m2_x + dx * dx * na * nb / n;
        self.m2_y += other.m2_y + dy * dy * na * nb / n;
        self.co += other.co + dx * dy * na * nb / n;
        self.n = self.n.saturating_add(other.n);
    }

    /// Standard deviation of `x` (population).
    pub fn sd_x(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2_x / f64::from(self.n)).sqrt()
        }
    }

    /// Pearson's correlation; 0 when either side does not vary.
    pub fn correlation(&self) -> f64 {
        let d = (self.m2_x * self.m2_y).sqrt();
        if self.n < 2 || d <= 0.0 {
            0.0
        } else {
            (self.co / d).clamp(-1.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item `i`'s values: `wrapped` items carry `wrapper`, every item some values of its own.
    fn item(i: u32, wrapper: Option<u16>) -> [u16; 4] {
        let own = |k: u32| (mix(u64::from(i) * 8 + u64::from(k)) >> 49) as u16 | 1;
        [wrapper.unwrap_or(own(0)), own(1), own(2), own(3)]
    }

    #[test]
    fn recurring_values_are_counted_as_shares_of_the_items_and_summed_over_wrappers() {
        // Two wrappers taken in turn around prompts of their own, each on half the items.
        let mut r = Recurring::<4>::default();
        for i in 0..400 {
            r.observe(&item(i, Some(if i % 3 == 0 { 7 } else { 9 })));
        }
        assert!(r.share() > 0.95, "{r:?}");
        // A wrapper on a tenth of the items is not a template of the whole.
        let mut r = Recurring::<4>::default();
        for i in 0..400 {
            r.observe(&item(i, (i % 10 == 0).then_some(7)));
        }
        assert_eq!(r.share(), 0.0, "{r:?}");
        // Values that never recur take up nothing.
        let mut r = Recurring::<4>::default();
        for i in 0..400 {
            r.observe(&item(i, None));
        }
        assert_eq!(r.share(), 0.0, "{r:?}");
    }

    #[test]
    fn a_wrapper_taken_up_late_replaces_a_value_that_stopped_recurring() {
        // Four chance repeats fill the slots early; a wrapper that starts later still finds
        // one, and its share is of the items since.
        let mut r = Recurring::<4>::default();
        for i in 0..40 {
            r.observe(&item(i, Some(100 + i as u16 / 2)));
        }
        for i in 40..400 {
            r.observe(&item(i, (i % 2 == 0).then_some(7)));
        }
        assert!((r.share() - 0.5).abs() < 0.05, "{r:?}");
    }

    #[test]
    fn merging_counts_a_value_one_side_never_followed_as_absent_there() {
        let mut a = Recurring::<4>::default();
        let mut b = Recurring::<4>::default();
        for i in 0..100 {
            a.observe(&item(i, Some(7)));
            b.observe(&item(1000 + i, None));
        }
        a.merge(&b);
        assert!((a.share() - 0.5).abs() < 0.05, "{a:?}");
        let mut c = Recurring::<4>::default();
        for i in 0..100 {
            c.observe(&item(2000 + i, Some(7)));
        }
        a.merge(&c);
        assert!((a.share() - 2.0 / 3.0).abs() < 0.05, "{a:?}");
    }

    #[test]
    fn streams_taking_turns_merge_into_one_stream_as_regular_as_each() {
        let paced = |gap: f64| {
            let mut m = Moments::default();
            for i in 0..60 {
                m.push(gap + f64::from(i % 3));
            }
            m
        };
        let mut a = paced(185.0);
        let mut pooled = a;
        pooled.merge(&paced(60.0));
        a.merge_streams(&paced(60.0), true);
        assert!(a.cv() < 0.05, "interleaved paced streams: cv {}", a.cv());
        assert!(
            pooled.cv() > 0.4,
            "pooled gaps of different streams: cv {}",
            pooled.cv()
        );
        assert!(
            (a.mean - 1.0 / (1.0 / 186.0 + 1.0 / 61.0)).abs() < 1.0,
            "{}",
            a.mean
        );
        let mut one_after_another = paced(100.0);
        one_after_another.merge_streams(&paced(100.0), false);
        assert!((one_after_another.mean - 101.0).abs() < 1.0);
        assert_eq!(one_after_another.n, 121);
    }

    #[test]
    fn comoments_correlate_and_merge_like_one_pass() {
        let pairs: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                let x = f64::from(i % 37) / 5.0;
                (x, 2.0 * x + f64::from((i * 7) % 5) / 10.0)
            })
            .collect();
        let mut all = CoMoments::default();
        let (mut a, mut b) = (CoMoments::default(), CoMoments::default());
        for (i, &(x, y)) in pairs.iter().enumerate() {
            all.push(x, y);
            if i < 70 {
                a.push(x, y)
            } else {
                b.push(x, y)
            }
        }
        a.merge(&b);
        assert_eq!(a.n, all.n);
        assert!((a.correlation() - all.correlation()).abs() < 1e-9);
        assert!((a.sd_x() - all.sd_x()).abs() < 1e-9);
        assert!(all.correlation() > 0.99, "{}", all.correlation());
        let mut unrelated = CoMoments::default();
        for i in 0..200u32 {
            unrelated.push(f64::from(i % 13), f64::from((i * 7919) % 11));
        }
        assert!(
            unrelated.correlation().abs() < 0.2,
            "{}",
            unrelated.correlation()
        );
        assert_eq!(CoMoments::default().correlation(), 0.0);
    }

    #[test]
    fn hll_counts_distinct_values_roughly() {
        let mut h = Hll::<64>::default();
        for i in 0..1000u64 {
            h.insert(mix(i % 300));
        }
        let e = h.estimate();
        assert!((240.0..360.0).contains(&e), "estimate {e}");
        let mut small = Hll::<64>::default();
        for i in 0..10u64 {
            small.insert(mix(i));
        }
        assert!((8.0..12.5).contains(&small.estimate()));
    }

    #[test]
    fn kept_sum_matches_the_registers_after_inserts_and_merges() {
        fn recomputed<const M: usize>(h: &Hll<M>) -> (u16, f64) {
            let zeros = h.registers.iter().filter(|&&r| r == 0).count() as u16;
            let sum = h.registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
            (zeros, sum)
        }
        let (mut a, mut b) = (Hll::<256>::default(), Hll::<256>::default());
        for i in 0..5_000u64 {
            a.insert(mix(i));
            b.insert(mix(i * 7 + 3));
        }
        a.merge(&b);
        let (zeros, sum) = recomputed(&a);
        assert_eq!(a.zeros, zeros);
        let kept =
            f64::from(a.zeros) + a.filled_sum as f64 / 2f64.powi(Hll::<256>::RANK_SPAN as i32);
        assert!((kept - sum).abs() < 1e-12, "kept {kept} recomputed {sum}");
        // Two sketches of the same set agree exactly, whatever the order of inserts.
        let (mut fwd, mut back) = (Hll::<128>::default(), Hll::<128>::default());
        for i in 0..3_000u64 {
            fwd.insert(mix(i));
            back.insert(mix(2_999 - i));
        }
        assert_eq!(fwd.estimate().to_bits(), back.estimate().to_bits());
        let e = fwd.estimate();
        assert!((2_700.0..3_300.0).contains(&e), "estimate {e}");
    }

    #[test]
    fn heavy_hitters_keep_the_majority() {
        let mut hh = HeavyHitters::<4>::default();
        for i in 0..100u64 {
            hh.insert(if i % 2 == 0 { 7 } else { mix(i) });
        }
        let (k, c) = hh.top().unwrap();
        assert_eq!(k, 7);
        assert!(c >= 30, "count {c}");
    }

    #[test]
    fn entropy_is_normalised_by_sample_size() {
        assert_eq!(normalised_entropy(&[5, 0, 0, 0]), 0.0);
        assert!((normalised_entropy(&[1, 1, 1, 1, 0, 0, 0, 0]) - 1.0).abs() < 1e-9);
        assert!(normalised_entropy(&[10, 1, 1, 0]) < 0.6);
    }

    #[test]
    fn merged_sketches_equal_sketches_of_the_union() {
        let (mut a, mut b, mut both) = (
            Hll::<32>::default(),
            Hll::<32>::default(),
            Hll::<32>::default(),
        );
        for i in 0..50u64 {
            a.insert(mix(i));
            both.insert(mix(i));
        }
        for i in 30..90u64 {
            b.insert(mix(i));
            both.insert(mix(i));
        }
        a.merge(&b);
        assert_eq!(a.estimate(), both.estimate());
        let (mut m1, mut m2, mut all) =
            (Moments::default(), Moments::default(), Moments::default());
        for x in [1.0, 2.0, 3.0] {
            m1.push(x);
            all.push(x);
        }
        for x in [10.0, 20.0] {
            m2.push(x);
            all.push(x);
        }
        m1.merge(&m2);
        assert!((m1.mean - all.mean).abs() < 1e-9 && (m1.variance() - all.variance()).abs() < 1e-9);
        let (mut h1, mut h2) = (HeavyHitters::<4>::default(), HeavyHitters::<4>::default());
        for _ in 0..10 {
            h1.insert(7);
            h2.insert(7);
        }
        h2.insert(8);
        h1.merge(&h2);
        assert_eq!(h1.top(), Some((7, 20)));
    }

    #[test]
    fn moments_cv_of_constant_is_zero() {
        let mut m = Moments::default();
        for _ in 0..10 {
            m.push(3.0);
        }
        assert!(m.cv() < 1e-9);
    }
}
