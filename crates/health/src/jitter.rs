//! Deterministic per-target randomness: a stable hash of the target's name
//! mixed with a seed, so that checks spread out the same way on every run.

use crate::target::TargetName;

/// FNV-1a over the service and server names (stable across Rust versions,
/// unlike `DefaultHasher`), mixed with `seed`.
pub(crate) fn target_seed(name: &TargetName, seed: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    // 0xff never occurs in UTF-8, so ("ab","c") and ("a","bc") hash apart.
    let bytes = name
        .service
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0xff))
        .chain(name.server.as_bytes());
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    SplitMix64::new(h ^ seed).next_u64()
}

/// SplitMix64: tiny, fast, good enough to spread timers.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(state: u64) -> Self {
        Self(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0), by multiply-shift.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(bound);
        // The high half of a 64x64 product always fits in 64 bits.
        u64::try_from(wide >> 64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_depends_on_both_names_and_seed() {
        let a = target_seed(&TargetName::new("web", "srv1"), 0);
        assert_eq!(a, target_seed(&TargetName::new("web", "srv1"), 0));
        assert_ne!(a, target_seed(&TargetName::new("web", "srv2"), 0));
        assert_ne!(a, target_seed(&TargetName::new("web", "srv1"), 1));
        assert_ne!(
            target_seed(&TargetName::new("ab", "c"), 0),
            target_seed(&TargetName::new("a", "bc"), 0)
        );
    }

    #[test]
    fn below_stays_below_bound() {
        let mut r = SplitMix64::new(7);
        for bound in [1u64, 2, 3, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(r.below(bound) < bound);
            }
        }
        assert_eq!(r.below(0), 0);
    }
}
