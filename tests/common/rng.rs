//! A small seeded random source for workloads that must repeat exactly.

/// splitmix64: the same sequence on every run, with no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn text(&mut self, max_len: u64) -> String {
        let len = 1 + self.below(max_len);
        (0..len).map(|_| char::from(b'a' + self.below(26) as u8)).collect()
    }
}
