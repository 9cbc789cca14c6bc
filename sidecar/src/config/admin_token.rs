//! `admin.token_file`: the bearer token that state-changing admin requests
//! must present.
//!
//! Only the SHA-256 of the token is kept, and a presented token is hashed
//! and compared in constant time (`subtle`), so neither the comparison's
//! timing nor a memory dump of the config gives the token away; hashing
//! first also hides the token's length. Never logged, never in
//! `/admin/state`.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fewer bytes than this is a password, not a token.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A loaded admin token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub file: PathBuf,
    sha256: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken").field("file", &self.file).field("sha256", &"<redacted>").finish()
    }
}

impl AdminToken {
    /// Reads the token from `path`: its contents without surrounding
    /// whitespace (a trailing newline is usual), at least
    /// [`MIN_TOKEN_BYTES`] of visible ASCII, which is what a header carries.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_contents(path, &bytes)
    }

    fn from_contents(path: &Path, bytes: &[u8]) -> Result<Self, String> {
        let token = bytes.trim_ascii();
        if token.is_empty() {
            return Err(format!("{}: the file is empty", path.display()));
        }
        if !token.iter().all(|b| (0x21..0x7f).contains(b)) {
            return Err(format!(
                "{}: the token must be visible ASCII (no spaces or control characters)",
                path.display()
            ));
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!("{}: the token must be at least {MIN_TOKEN_BYTES} characters", path.display()));
        }
        Ok(Self { file: path.to_owned(), sha256: Sha256::digest(token).into() })
    }

    /// Whether `presented` is the token, in time independent of both.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.sha256).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(contents: &str) -> Result<AdminToken, String> {
        AdminToken::from_contents(Path::new("t"), contents.as_bytes())
    }

    #[test]
    fn a_token_is_trimmed_and_matched_exactly() {
        let t = token("  0123456789abcdef-xyz\n").unwrap();
        assert!(t.matches(b"0123456789abcdef-xyz"));
        assert!(!t.matches(b"0123456789abcdef-xy"));
        assert!(!t.matches(b"0123456789abcdef-xyz "));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[test]
    fn empty_short_or_unprintable_tokens_are_refused() {
        assert!(token("").unwrap_err().contains("empty"));
        assert!(token(" \n").unwrap_err().contains("empty"));
        assert!(token("short").unwrap_err().contains("at least"));
        assert!(token("0123456789 abcdef").unwrap_err().contains("visible ASCII"));
        assert!(AdminToken::read(Path::new("/nonexistent/token")).is_err());
    }
}
