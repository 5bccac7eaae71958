//! Monotonic ULIDs: 48 bits of Unix milliseconds and 80 random bits, in
//! Crockford base32. Within one millisecond (or if the clock steps back) the
//! previous value is incremented, so values from one process sort strictly
//! increasing: sweep directories are unique and time-ordered.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;

static LAST: Mutex<u128> = Mutex::new(0);

/// The next ULID of this process.
pub fn ulid() -> String {
    ulids(1).pop().expect("one ULID")
}

/// `n` consecutive ULIDs, strictly increasing.
pub fn ulids(n: usize) -> Vec<String> {
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (0..n)
        .map(|_| {
            *last = next_after(*last, now_millis());
            encode(*last)
        })
        .collect()
}

fn now_millis() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as u64 & ((1 << 48) - 1)
}

/// A fresh random ULID for a new millisecond, else the last one plus one.
fn next_after(last: u128, millis: u64) -> u128 {
    if (last >> RANDOM_BITS) < u128::from(millis) {
        (u128::from(millis) << RANDOM_BITS) | random_bits()
    } else {
        // Same millisecond or a clock step back; overflowing into the time
        // part only moves it forward, which keeps the order.
        last + 1
    }
}

fn random_bits() -> u128 {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    // Leave headroom so increments within one millisecond stay in the random part.
    u128::from_le_bytes(bytes) & (RANDOM_MASK >> 1)
}

fn encode(value: u128) -> String {
    (0..26).rev().map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_26_crockford_characters() {
        assert_eq!(encode(0), "00000000000000000000000000");
        assert_eq!(encode(u128::MAX), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        let id = ulid();
        assert_eq!(id.len(), 26);
        assert!(id.bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn strictly_increasing_within_a_millisecond() {
        let ids = ulids(10_000);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn carries_the_timestamp() {
        let before = now_millis();
        let id = ulid();
        let decoded = id.bytes().fold(0u128, |acc, b| {
            (acc << 5) | ALPHABET.iter().position(|&c| c == b).unwrap() as u128
        });
        assert!((decoded >> RANDOM_BITS) as u64 >= before);
    }

    #[test]
    fn increments_when_the_clock_stands_still_or_steps_back() {
        let last = (5u128 << RANDOM_BITS) | 7;
        assert_eq!(next_after(last, 5), last + 1);
        assert_eq!(next_after(last, 4), last + 1);
        assert!(next_after(last, 6) >> RANDOM_BITS == 6);
    }
}
