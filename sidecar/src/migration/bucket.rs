//! Sticky bucket choice: a stable hash of who asked and what, in [0, 10000).
//!
//! FNV-1a 64 is tiny, fast on short inputs and fixed forever, which is what
//! stickiness across processes and releases needs (std's hasher is neither
//! stable nor specified). A POST hashes (client id, 0xff, Idempotency-Key) so
//! a retried payment lands in the same bucket; a GET hashes its resource id.

/// Number of buckets; a percent `p` covers buckets below `p × 100`.
pub const BUCKETS: u64 = 10_000;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The bucket for `parts` hashed in order with a 0xff separator between
/// them (0xff never occurs in UTF-8, so ("ab","c") and ("a","bc") differ).
pub fn bucket_for(parts: &[&[u8]]) -> u32 {
    let mut h = FNV_OFFSET;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = fnv1a(h, &[0xff]);
        }
        h = fnv1a(h, p);
    }
    (h % BUCKETS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_input_same_bucket() {
        let a = bucket_for(&[b"checkout", b"key-1"]);
        assert_eq!(a, bucket_for(&[b"checkout", b"key-1"]));
        assert!(u64::from(a) < BUCKETS);
        assert_ne!(bucket_for(&[b"ab", b"c"]), bucket_for(&[b"a", b"bc"]), "the separator keeps part boundaries");
    }

    #[test]
    fn raising_the_percent_only_moves_legacy_to_orchestration() {
        let keys: Vec<u32> = (0..5000).map(|i| bucket_for(&[b"checkout", format!("idem-{i}").as_bytes()])).collect();
        let mut before: Vec<bool> = vec![false; keys.len()];
        for bp in (0..=10_000).step_by(250) {
            for (i, &b) in keys.iter().enumerate() {
                let orch = b < bp;
                assert!(orch || !before[i], "bucket {b} moved back at {bp}");
                before[i] = orch;
            }
        }
        assert!(before.iter().all(|&o| o), "100% sends everything to orchestration");
    }

    #[test]
    fn buckets_are_evenly_spread() {
        const N: usize = 100_000;
        let mut deciles = [0usize; 10];
        for i in 0..N {
            let b = bucket_for(&[b"checkout", format!("{i:08x}-idem").as_bytes()]);
            deciles[b as usize / 1000] += 1;
        }
        for (d, &n) in deciles.iter().enumerate() {
            let share = n as f64 / N as f64;
            assert!((0.09..0.11).contains(&share), "decile {d} has {share}");
        }
        let at_12_5 = (0..N).filter(|i| bucket_for(&[b"c", i.to_string().as_bytes()]) < 1250).count() as f64 / N as f64;
        assert!((0.115..0.135).contains(&at_12_5), "12.5% gives {at_12_5}");
    }
}
