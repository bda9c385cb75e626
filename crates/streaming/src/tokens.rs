//! One-time tokens: CRI's Exec, Attach and PortForward calls only return a
//! URL; what the URL stands for waits here until the client comes for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Random bytes per token: 128 bits, so guessing one is hopeless even
/// with many outstanding (kubelet uses 48).
const TOKEN_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("too many streaming requests in flight ({0} unused tokens); try again later")]
    TooMany(usize),
    #[error("no randomness for a streaming token: {0}")]
    Random(String),
}

struct Entry<T> {
    value: T,
    expires: Instant,
}

/// Tokens to values, each good for one [`TokenCache::consume`] before its
/// expiry.
pub(crate) struct TokenCache<T> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> TokenCache<T> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        TokenCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn insert(&self, value: T) -> Result<String, TokenError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Expired entries go on every insert, so the map never holds more
        // than `max` and nothing needs a timer.
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= self.max {
            return Err(TokenError::TooMany(entries.len()));
        }
        loop {
            let token = new_token()?;
            if !entries.contains_key(&token) {
                entries.insert(
                    token.clone(),
                    Entry {
                        value,
                        expires: now + self.ttl,
                    },
                );
                return Ok(token);
            }
        }
    }

    /// The value behind `token`, which is used up whether or not it had
    /// expired.
    pub(crate) fn consume(&self, token: &str) -> Option<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.remove(token)?;
        (entry.expires > Instant::now()).then_some(entry.value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

fn new_token() -> Result<String, TokenError> {
    let mut raw = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut raw).map_err(|e| TokenError::Random(e.to_string()))?;
    // URL-safe without padding: it goes into a path segment as is.
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_once() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(7).unwrap();
        assert_eq!(token.len(), 22);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(cache.consume(&token), Some(7));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("nonsense"), None);
    }

    #[test]
    fn an_expired_token_is_refused_and_forgotten() {
        let cache = TokenCache::new(Duration::from_millis(20), 10);
        let token = cache.insert(1).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.consume(&token), None);
        let _old = cache.insert(2).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let _new = cache.insert(3).unwrap();
        assert_eq!(cache.len(), 1, "the expired token went on insert");
    }

    #[test]
    fn outstanding_tokens_are_capped() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        let a = cache.insert(1).unwrap();
        cache.insert(2).unwrap();
        assert_eq!(cache.insert(3), Err(TokenError::TooMany(2)));
        cache.consume(&a);
        cache.insert(3).unwrap();
    }

    #[test]
    fn tokens_differ() {
        let cache = TokenCache::new(Duration::from_secs(60), 1000);
        let tokens: std::collections::HashSet<_> =
            (0..500).map(|i| cache.insert(i).unwrap()).collect();
        assert_eq!(tokens.len(), 500);
    }
}
