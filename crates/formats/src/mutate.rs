//! Deterministic mutation fuzzing shared by the parsers' tests: a xorshift generator and one byte
//! mutator (bit flips, truncation, insertion and overwriting with the format's meaningful bytes,
//! splices, deletions and, for binary formats, extreme little-endian integers where lengths live).
//! Every parser is fuzzed the same way; only the alphabet and the sizes differ.

/// xorshift64: the same sequence for the same seed, on every machine.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// How one format's inputs are mutated.
pub(crate) struct Mutator {
    /// The bytes inserted and written over: the format's delimiters, digits, signs, lead bytes. Empty:
    /// any byte.
    pub alphabet: &'static [u8],
    /// The most bytes one insertion adds.
    pub max_insert: usize,
    /// The longest chunk one splice copies over another place.
    pub max_splice: usize,
    /// The most bytes one deletion removes.
    pub max_drain: usize,
    /// Also overwrite four bytes with an extreme little-endian u32 (binary lengths and counts).
    pub le_ints: bool,
}

impl Mutator {
    fn byte(&self, rng: &mut Rng) -> u8 {
        if self.alphabet.is_empty() {
            rng.next() as u8
        } else {
            self.alphabet[rng.below(self.alphabet.len())]
        }
    }

    /// One to four mutations of `seed`.
    pub fn mutate(&self, rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = b.len();
            match rng.below(if self.le_ints { 7 } else { 6 }) {
                0 => {
                    let i = rng.below(len);
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << rng.below(8);
                    }
                }
                1 => b.truncate(rng.below(len)),
                2 => {
                    let at = rng.below(len + 1);
                    let n = 1 + rng.below(self.max_insert);
                    let ins: Vec<u8> = (0..n).map(|_| self.byte(rng)).collect();
                    b.splice(at..at, ins);
                }
                3 => {
                    let from = rng.below(len);
                    let to = rng.below(len);
                    let n = (1 + rng.below(self.max_splice))
                        .min(len - from.min(len))
                        .min(len - to.min(len));
                    let chunk: Vec<u8> = b.get(from..from + n).unwrap_or(&[]).to_vec();
                    if let Some(dst) = b.get_mut(to..to + chunk.len()) {
                        dst.copy_from_slice(&chunk);
                    }
                }
                4 => {
                    let at = rng.below(len);
                    let end = (at + rng.below(self.max_drain)).min(len);
                    b.drain(at..end);
                }
                5 => {
                    let i = rng.below(len);
                    let v = self.byte(rng);
                    if let Some(x) = b.get_mut(i) {
                        *x = v;
                    }
                }
                _ => {
                    let at = rng.below(len);
                    let v = [0u32, 1, 0xFF, 0xFFFF, 0x7FFF_FFFF, u32::MAX][rng.below(6)];
                    if let Some(dst) = b.get_mut(at..at + 4) {
                        dst.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        b
    }
}
