//! `[status.auth]`'s credentials and the check of a request's
//! `Authorization` header against them, for the page's one action (alarm
//! acknowledgement). Pure: the files are read by the config's validation
//! (which refuses one readable by group or others), this module gets
//! their text.
//!
//! Guarantees: a token (`Authorization: Bearer <token>`) and a basic
//! credential (`Authorization: Basic <base64 user:password>`) are compared
//! in constant time (`subtle`), against every configured entry without
//! stopping at the first match, so the time of a refusal says nothing of
//! how much of a guess was right (only its length, which the compare of
//! two slices cannot hide); the `Debug` form shows how many credentials
//! there are, never them (`debug_shows_no_secret`).

use base64::Engine;
use subtle::ConstantTimeEq;

/// The credentials that may act on the page.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusAuth {
    /// Bearer tokens, one a line of `token_file`.
    tokens: Vec<Vec<u8>>,
    /// `user:password` lines of `basic_file`.
    basic: Vec<Vec<u8>>,
}

impl std::fmt::Debug for StatusAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StatusAuth {{ tokens: {}, basic: {} }}",
            self.tokens.len(),
            self.basic.len()
        )
    }
}

/// Why a request may not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this action needs credentials (Authorization: Bearer or Basic)")]
    Missing,
    #[error("the credentials given are not accepted")]
    Wrong,
}

/// What is wrong with a credentials file's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFileError {
    #[error("holds no credential")]
    Empty,
    #[error("line {0} is not \"user:password\"")]
    NotUserPassword(usize),
}

/// Who acted, when the check passed: the basic user, or `None` for a token.
pub type Actor = Option<String>;

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

impl StatusAuth {
    /// From the text of `token_file` (one token a line) and of
    /// `basic_file` (one `user:password` a line); `#` lines are comments.
    pub fn from_texts(
        token_file: Option<&str>,
        basic_file: Option<&str>,
    ) -> Result<StatusAuth, (&'static str, AuthFileError)> {
        let tokens: Vec<Vec<u8>> = token_file
            .map(|t| lines(t).map(|(_, l)| l.as_bytes().to_vec()).collect())
            .unwrap_or_default();
        if token_file.is_some() && tokens.is_empty() {
            return Err(("token_file", AuthFileError::Empty));
        }
        let mut basic = Vec::new();
        if let Some(text) = basic_file {
            for (n, l) in lines(text) {
                match l.split_once(':') {
                    Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                        basic.push(l.as_bytes().to_vec())
                    }
                    _ => return Err(("basic_file", AuthFileError::NotUserPassword(n))),
                }
            }
            if basic.is_empty() {
                return Err(("basic_file", AuthFileError::Empty));
            }
        }
        Ok(StatusAuth { tokens, basic })
    }

    /// Whether a token is accepted (the page then asks for one).
    pub fn takes_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether user and password are accepted.
    pub fn takes_basic(&self) -> bool {
        !self.basic.is_empty()
    }

    /// Check an `Authorization` header's value.
    pub fn check(&self, authorization: Option<&str>) -> Result<Actor, AuthError> {
        let value = authorization.map(str::trim).ok_or(AuthError::Missing)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AuthError::Wrong)?;
        let rest = rest.trim().as_bytes();
        if scheme.eq_ignore_ascii_case("bearer") {
            return any_equal(&self.tokens, rest)
                .then_some(None)
                .ok_or(AuthError::Wrong);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Wrong)?;
            if !any_equal(&self.basic, &decoded) {
                return Err(AuthError::Wrong);
            }
            let text = String::from_utf8_lossy(&decoded);
            let user = text.split_once(':').map(|(u, _)| u.to_owned());
            return Ok(user);
        }
        Err(AuthError::Wrong)
    }
}

/// Whether `given` equals one of `known`, looking at every entry.
fn any_equal(known: &[Vec<u8>], given: &[u8]) -> bool {
    let mut found = subtle::Choice::from(0);
    for k in known {
        found |= k.as_slice().ct_eq(given);
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn check_table() {
        let auth = StatusAuth::from_texts(
            Some("# the technicians' token\ns3cret-token\n"),
            Some("anna:pw-1\nbob:pw:with:colons\n"),
        )
        .unwrap();
        let basic_anna = format!("Basic {}", b64("anna:pw-1"));
        let basic_bob = format!("basic {}", b64("bob:pw:with:colons"));
        let basic_wrong = format!("Basic {}", b64("anna:pw-2"));
        let table: &[(Option<&str>, Result<Actor, AuthError>)] = &[
            (None, Err(AuthError::Missing)),
            (Some("Bearer s3cret-token"), Ok(None)),
            (Some("bearer  s3cret-token "), Ok(None)),
            (Some("Bearer s3cret-toke"), Err(AuthError::Wrong)),
            (Some("Bearer s3cret-token2"), Err(AuthError::Wrong)),
            (
                Some("Bearer # the technicians' token"),
                Err(AuthError::Wrong),
            ),
            (Some("s3cret-token"), Err(AuthError::Wrong)),
            (Some(basic_anna.as_str()), Ok(Some("anna".into()))),
            (Some(basic_bob.as_str()), Ok(Some("bob".into()))),
            (Some(basic_wrong.as_str()), Err(AuthError::Wrong)),
            (Some("Basic !!notbase64"), Err(AuthError::Wrong)),
            (Some("Digest s3cret-token"), Err(AuthError::Wrong)),
        ];
        for (header, want) in table {
            assert_eq!(&auth.check(*header), want, "{header:?}");
        }
        let token_only = StatusAuth::from_texts(Some("t-1"), None).unwrap();
        assert!(token_only.takes_token() && !token_only.takes_basic());
        assert_eq!(
            token_only.check(Some(&basic_anna)),
            Err(AuthError::Wrong),
            "no basic file: no user passes"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_key() {
        assert_eq!(
            StatusAuth::from_texts(Some("# only a comment\n\n"), None),
            Err(("token_file", AuthFileError::Empty))
        );
        assert_eq!(
            StatusAuth::from_texts(None, Some("anna:pw\njust-a-name\n")),
            Err(("basic_file", AuthFileError::NotUserPassword(2)))
        );
        assert_eq!(
            StatusAuth::from_texts(None, Some(":pw\n")),
            Err(("basic_file", AuthFileError::NotUserPassword(1)))
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let auth = StatusAuth::from_texts(Some("tok-XYZ"), Some("u:pw-XYZ")).unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("XYZ"), "{shown}");
        assert_eq!(shown, "StatusAuth { tokens: 1, basic: 1 }");
    }
}
