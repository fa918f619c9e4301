//! Fakes what users upload: deterministic bytes for benches and load tests. The contract they
//! keep is that of most real uploads as the pipeline sees them: incompressible, and matching no
//! signature, so the object is clean and travels the whole clean path.

/// Pseudo-random bytes (xorshift) from `seed`: incompressible like most uploads, and matching no
/// signature. For benches and load tests.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
