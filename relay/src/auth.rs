//! Gateway credentials: bearer tokens stored as hashes, and the lookup from
//! a presented token to the gateway it belongs to.
//!
//! A config lists, per gateway, one or more token hashes
//! (`tokens = ["sha256:<64 hex digits>", ...]`, printed by
//! `edge-relay hash-token`). Several active hashes per gateway let an
//! operator rotate a token without downtime: add the new hash, move the
//! gateway to the new token, remove the old hash. Removing a hash revokes
//! that token at the next restart.
//!
//! Why SHA-256 and not argon2: gateway tokens are machine-generated secrets
//! of at least 16 bytes (the `hash-token` command refuses shorter ones), so
//! guessing one is hopeless whatever the hash; a slow password hash only
//! protects low-entropy human passwords, and it would cost tens of
//! milliseconds *per request* (every batch carries the token), which is a
//! denial-of-service lever for anyone on the internet. SHA-256 costs well
//! under a microsecond. The input is prefixed with a fixed domain string
//! ([`DOMAIN`]) so the stored hashes are not plain SHA-256 of the token and
//! cannot be looked up in generic tables; a per-entry salt would force one
//! hash per configured token per request and buys nothing for random
//! tokens.
//!
//! Timing: the presented token is hashed once, then compared with *every*
//! configured hash in constant time ([`subtle`]), with no early exit, so the
//! answer time depends only on the number of configured hashes, never on
//! which one matched or how close a wrong token was.
//!
//! Not here: reading the config (see [`crate::config`]), HTTP (see
//! [`crate::server`]), client certificates (see [`crate::tls`]).

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Domain-separation prefix hashed before every token.
pub const DOMAIN: &[u8] = b"edge-relay gateway token v1\0";
/// Prefix of a token hash in the config file.
pub const HASH_PREFIX: &str = "sha256:";
/// Shortest gateway token accepted, in bytes. Tokens are bearer secrets.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The stored form of one gateway token. `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a presented or configured token.
    pub fn of(token: &[u8]) -> TokenHash {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update(token);
        TokenHash(hasher.finalize().into())
    }

    /// Parse the config form `sha256:<64 lowercase or uppercase hex digits>`.
    pub fn parse(text: &str) -> Result<TokenHash, String> {
        let hex_digits = text.strip_prefix(HASH_PREFIX).ok_or_else(|| {
            format!("must start with {HASH_PREFIX:?} (make one with `edge-relay hash-token`)")
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|e| {
            format!("must be {HASH_PREFIX} followed by 64 hex digits ({e}); make one with `edge-relay hash-token`")
        })?;
        Ok(TokenHash(bytes))
    }

    /// The config form, `sha256:<64 hex digits>`.
    pub fn to_config_string(&self) -> String {
        format!("{HASH_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// Why a token cannot be used, whatever form it came in.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "must be at least {MIN_TOKEN_BYTES} bytes, is {}",
            token.len()
        ));
    }
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Every configured token hash with the index of its gateway.
#[derive(Debug, Default)]
pub struct Credentials {
    entries: Vec<(TokenHash, u32)>,
}

impl Credentials {
    /// Credentials from `(gateway index, hashes)` pairs.
    pub fn new<'a>(gateways: impl IntoIterator<Item = (usize, &'a [TokenHash])>) -> Credentials {
        let mut entries = Vec::new();
        for (index, hashes) in gateways {
            let index = u32::try_from(index).expect("fewer than 2^32 gateways");
            entries.extend(hashes.iter().map(|h| (*h, index)));
        }
        Credentials { entries }
    }

    /// The index of the gateway `token` belongs to, in time that depends
    /// only on the number of configured hashes.
    pub fn lookup(&self, token: &[u8]) -> Option<usize> {
        let presented = TokenHash::of(token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (hash, gateway) in &self.entries {
            let equal = hash.0.ct_eq(&presented.0);
            index.conditional_assign(gateway, equal);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_through_the_config_form() {
        let h = TokenHash::of(b"token-of-gateway-one");
        let text = h.to_config_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(TokenHash::parse(&text).unwrap(), h);
        assert_eq!(
            TokenHash::parse(&text.to_uppercase().replace("SHA256", "sha256")).unwrap(),
            h
        );
    }

    #[test]
    fn hash_is_domain_separated_from_plain_sha256() {
        let plain: [u8; 32] = Sha256::digest(b"token-of-gateway-one").into();
        assert_ne!(TokenHash::of(b"token-of-gateway-one").0, plain);
    }

    #[test]
    fn malformed_hashes_are_refused_with_the_reason() {
        for (text, expected) in [
            ("token-of-gateway-one", "must start with \"sha256:\""),
            ("sha256:abc", "64 hex digits"),
            (&format!("sha256:{}", "g".repeat(64)), "64 hex digits"),
        ] {
            let err = TokenHash::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn lookup_finds_every_active_token_and_nothing_else() {
        let a = [
            TokenHash::of(b"a-old-0123456789"),
            TokenHash::of(b"a-new-0123456789"),
        ];
        let b = [TokenHash::of(b"b-0123456789abcd")];
        let creds = Credentials::new([(0, &a[..]), (1, &b[..])]);
        assert_eq!(creds.lookup(b"a-old-0123456789"), Some(0));
        assert_eq!(creds.lookup(b"a-new-0123456789"), Some(0));
        assert_eq!(creds.lookup(b"b-0123456789abcd"), Some(1));
        assert_eq!(creds.lookup(b"b-0123456789abc"), None);
        assert_eq!(creds.lookup(b""), None);
        // Revoking: the removed token no longer matches, the other still does.
        let creds = Credentials::new([(0, &a[1..]), (1, &b[..])]);
        assert_eq!(creds.lookup(b"a-old-0123456789"), None);
        assert_eq!(creds.lookup(b"a-new-0123456789"), Some(0));
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let h = TokenHash::of(b"token-of-gateway-one");
        let hex_digits = &h.to_config_string()[7..];
        assert!(!format!("{h:?}").contains(&hex_digits[..8]));
    }
}
