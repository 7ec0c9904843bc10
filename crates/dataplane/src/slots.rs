//! Slot tables: how a service's backends are spread over the M slots a selector
//! (`numgen ... mod M`, `jhash ... mod M`) picks from.
//!
//! Rule for rr/wrr/random/sh: every backend with weight > 0 gets weight/g slots, g the
//! gcd of the positive weights, so M = (sum of weights)/g (rr: one slot each). When M
//! would exceed [`MAX_SLOTS`], the slots are apportioned by largest remainder over
//! [`MAX_SLOTS`] (each backend keeps at least one), then reduced by their gcd again.
//! Slots are ordered by smooth weighted round robin so that consecutive picks of
//! `numgen inc` interleave backends (3:1 gives A B A A, not A A A B).
//!
//! lc/wlc: a fixed number of slots ([`least_conn_slot_count`]: 32, or one per server
//! beyond 32) shared by largest remainder over the weights lbd feeds from the
//! servers' connection counts ([`least_conn_slots`]): a change of shares then
//! changes elements only, never the slot count (which would re-add the rule, and
//! make the kernel re-validate the table).
//!
//! mh: a Maglev lookup table (Eisenbud et al., NSDI 2016) of prime size
//! [`maglev_size`]; permutations come from two fixed-seed hashes of the backend
//! *name*, so both nodes build the same table from the same config.

/// Largest slot count for the weighted selectors.
pub const MAX_SLOTS: u32 = 256;

/// Backend index per slot for the weighted selectors (empty if no weight is positive).
pub fn weighted_slots(weights: &[u32]) -> Vec<usize> {
    smooth_order(&slot_counts(weights))
}

/// Backend index per slot for rr: one slot per backend with a positive weight.
pub fn rr_slots(weights: &[u32]) -> Vec<usize> {
    (0..weights.len()).filter(|&i| weights[i] > 0).collect()
}

/// Slots of an lc/wlc service: 32, or one per listed server when there are more (so
/// that every server can hold one); fixed while the server list is.
pub fn least_conn_slot_count(backends: usize) -> u32 {
    (backends as u32).max(LEAST_CONN_SLOTS)
}

/// The least-connection slot count for up to 32 servers.
pub const LEAST_CONN_SLOTS: u32 = 32;

/// Backend index per slot for lc/wlc: exactly `m` slots shared in proportion to
/// `weights` (largest remainder, each positive weight keeping at least one), in
/// smooth order; empty if no weight is positive.
pub fn least_conn_slots(weights: &[u32], m: u32) -> Vec<usize> {
    smooth_order(&exact_counts(weights, m))
}

/// `m` slots in proportion to `weights`: each positive weight at least one (while
/// `m` allows), the rest by largest remainder (ties to the lower index).
pub fn exact_counts(weights: &[u32], m: u32) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let positive = weights.iter().filter(|&&w| w > 0).count() as u64;
    if total == 0 {
        return vec![0; weights.len()];
    }
    let m = u64::from(m);
    let mut counts: Vec<u64> = vec![0; weights.len()];
    let mut left = m;
    if positive <= m {
        for (c, &w) in counts.iter_mut().zip(weights) {
            if w > 0 {
                *c = 1;
            }
        }
        left -= positive;
    }
    // What is left goes by the weights' shares of it, then by largest remainder.
    let mut rest: Vec<(u64, usize)> = Vec::with_capacity(weights.len());
    let mut given = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = u64::from(w) * left;
        counts[i] += exact / total;
        given += exact / total;
        rest.push((exact % total, i));
    }
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rest
        .iter()
        .filter(|(_, i)| weights[*i] > 0)
        .take((left - given) as usize)
    {
        counts[i] += 1;
    }
    counts.iter().map(|&c| c as u32).collect()
}

/// Slots per backend: weights reduced by their gcd, capped at [`MAX_SLOTS`] in total.
pub fn slot_counts(weights: &[u32]) -> Vec<u32> {
    apportion(weights, MAX_SLOTS)
}

/// Weights scaled to at most `cap` slots in total, each positive weight keeping >= 1.
fn apportion(weights: &[u32], cap: u32) -> Vec<u32> {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return vec![0; weights.len()];
    }
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w / g)).collect();
    let total: u64 = reduced.iter().sum();
    if total <= u64::from(cap) {
        return reduced.iter().map(|&c| c as u32).collect();
    }
    let positive = reduced.iter().filter(|&&c| c > 0).count() as u64;
    let cap = u64::from(cap).max(positive);
    // Largest remainder with a floor of one slot per positive weight.
    let mut counts: Vec<u64> = reduced
        .iter()
        .map(|&c| if c == 0 { 0 } else { (c * cap / total).max(1) })
        .collect();
    let mut rest: Vec<(u64, usize)> = reduced
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| ((c * cap) % total, i))
        .collect();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut sum: u64 = counts.iter().sum();
    for &(_, i) in rest.iter().cycle().take(rest.len() * 2) {
        if sum >= cap {
            break;
        }
        counts[i] += 1;
        sum += 1;
    }
    // The floors may overshoot: take back from the largest holders.
    while sum > cap {
        let Some(i) = (0..counts.len()).max_by_key(|&i| (counts[i], usize::MAX - i)) else {
            break;
        };
        if counts[i] <= 1 {
            break;
        }
        counts[i] -= 1;
        sum -= 1;
    }
    let g2 = counts.iter().copied().filter(|&c| c > 0).fold(0, gcd64);
    counts.iter().map(|&c| (c / g2.max(1)) as u32).collect()
}

/// nginx's smooth weighted round robin over `counts`: one pick per slot.
fn smooth_order(counts: &[u32]) -> Vec<usize> {
    let total: i64 = counts.iter().map(|&c| i64::from(c)).sum();
    let mut current = vec![0i64; counts.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = None;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            current[i] += i64::from(c);
            if best.is_none_or(|b: usize| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
            order.push(b);
        }
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn gcd64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd64(b, a % b)
    }
}

/// Maglev table size for `backends` backends: a prime with at least ~16 entries per
/// backend (251 up to 16 backends, 509 up to 32, ... 65521 beyond 2048). Fewer
/// entries per backend make removals move more than their share (measured: 32
/// backends in 251 entries move 3.7x the removed backend's share, in 509: 3x).
pub fn maglev_size(backends: usize) -> u32 {
    const SIZES: [(usize, u32); 8] = [
        (16, 251),
        (32, 509),
        (64, 1021),
        (128, 2039),
        (256, 4093),
        (512, 8191),
        (1024, 16381),
        (2048, 32749),
    ];
    SIZES
        .iter()
        .find(|(n, _)| backends <= *n)
        .map_or(65521, |&(_, p)| p)
}

/// A Maglev lookup table of prime `size`: backend index per entry. `names` identify
/// backends (their hash fixes the permutation); `weights` give each backend's share
/// (weight 0: no entries). Empty if no weight is positive.
pub fn maglev_table(names: &[&str], weights: &[u32], size: u32) -> Vec<usize> {
    let size = size as usize;
    // Entries claimed per turn, like IPVS mh: weights reduced by their gcd, capped so
    // one round never exceeds the table.
    let turns = apportion(weights, size as u32);
    let active: Vec<usize> = (0..names.len()).filter(|&i| turns[i] > 0).collect();
    if active.is_empty() || size < 2 {
        return Vec::new();
    }
    let perm: Vec<(usize, usize)> = active
        .iter()
        .map(|&i| {
            let offset = (hash(names[i], 0x6c62_7375_6974_6531) % size as u64) as usize;
            let skip = (hash(names[i], 0x6c62_7375_6974_6532) % (size as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0usize; active.len()];
    let mut table = vec![usize::MAX; size];
    let mut filled = 0;
    'fill: loop {
        for (k, &b) in active.iter().enumerate() {
            for _ in 0..turns[b] {
                let (offset, skip) = perm[k];
                let mut c = (offset + next[k] * skip) % size;
                while table[c] != usize::MAX {
                    next[k] += 1;
                    c = (offset + next[k] * skip) % size;
                }
                table[c] = b;
                next[k] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
    }
    table
}

/// FNV-1a over `s` from `seed`, finished with splitmix64: stable across builds and
/// machines (std's hashers promise neither).
fn hash(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(slots: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in slots {
            c[s] += 1;
        }
        c
    }

    #[test]
    fn weights_three_to_one_give_four_slots() {
        let s = weighted_slots(&[3, 1]);
        assert_eq!(s.len(), 4);
        assert_eq!(count(&s, 2), vec![3, 1]);
        // Smooth order: the light backend is not pushed to the end of the run.
        assert_eq!(s, vec![0, 0, 1, 0]);
    }

    #[test]
    fn gcd_reduces_slot_count() {
        assert_eq!(slot_counts(&[30, 10, 20]), vec![3, 1, 2]);
        assert_eq!(weighted_slots(&[100, 100]).len(), 2);
    }

    #[test]
    fn weight_zero_has_no_slot() {
        let s = weighted_slots(&[2, 0, 1]);
        assert_eq!(count(&s, 3), vec![2, 0, 1]);
        assert_eq!(rr_slots(&[5, 0, 1]), vec![0, 2]);
        assert!(weighted_slots(&[0, 0]).is_empty());
    }

    #[test]
    fn huge_weights_are_capped_by_largest_remainder() {
        let w = [1000, 999, 1];
        let c = slot_counts(&w);
        let total: u32 = c.iter().sum();
        assert!(total <= MAX_SLOTS, "{c:?}");
        assert!(c[2] >= 1, "every positive weight keeps a slot: {c:?}");
        let share = f64::from(c[0]) / f64::from(total);
        assert!((share - 0.5).abs() < 0.02, "{c:?}");
        println!("weights {w:?} -> slots {c:?}");
    }

    #[test]
    fn least_connection_keeps_its_slot_count_whatever_the_shares() {
        for w in [
            vec![1, 1],
            vec![3, 1],
            vec![0, 5],
            vec![1000, 1, 0, 7],
            vec![9; 5],
        ] {
            let s = least_conn_slots(&w, LEAST_CONN_SLOTS);
            assert_eq!(s.len(), 32, "{w:?}");
            let c = count(&s, w.len());
            for (i, &wi) in w.iter().enumerate() {
                assert_eq!(c[i] > 0, wi > 0, "{w:?} -> {c:?}");
            }
        }
        assert_eq!(exact_counts(&[3, 1], 32), vec![24, 8]);
        assert_eq!(exact_counts(&[0, 0], 32), vec![0, 0]);
        assert!(least_conn_slots(&[0, 0], 32).is_empty());
        assert_eq!(least_conn_slot_count(3), 32);
        assert_eq!(least_conn_slot_count(40), 40);
        assert_eq!(exact_counts(&[1; 40], 40), vec![1; 40]);
    }

    #[test]
    fn maglev_is_deterministic_and_balanced() {
        let names: Vec<String> = (0..10).map(|i| format!("srv{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = vec![1; 10];
        let a = maglev_table(&refs, &w, 251);
        let b = maglev_table(&refs, &w, 251);
        assert_eq!(a, b);
        assert_eq!(a.len(), 251);
        let c = count(&a, 10);
        // Each backend claims one entry per round: shares differ by at most one.
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    #[test]
    fn maglev_weights_shift_shares() {
        let w = [3, 1];
        let t = maglev_table(&["a", "b"], &w, 251);
        let c = count(&t, 2);
        let share = c[0] as f64 / 251.0;
        assert!((share - 0.75).abs() < 0.02, "{c:?}");
    }

    #[test]
    fn maglev_removal_moves_about_one_nth() {
        for n in [4usize, 8, 10, 16, 32] {
            let names: Vec<String> = (0..n).map(|i| format!("backend-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let size = maglev_size(n);
            let before = maglev_table(&refs, &vec![1; n], size);
            let mut w = vec![1; n];
            w[n / 2] = 0;
            let after = maglev_table(&refs, &w, size);
            let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let owned = before.iter().filter(|&&b| b == n / 2).count();
            println!("mh n={n} size={size}: removing one backend changed {changed} entries (it owned {owned})");
            // Entries of the removed backend must move; others move only a little:
            // at most 1/N of the table plus 10 %.
            assert!(changed >= owned);
            let bound = size as f64 / n as f64 + size as f64 * 0.10;
            assert!((changed as f64) <= bound, "n={n}: {changed} > {bound}");
        }
    }
}
