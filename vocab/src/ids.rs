//! The exact format of the ids paymesh issues: the kind's prefix, `_`, then
//! 24 base62 characters (about 142 random bits).
//!
//! An id that is not of this shape was never issued, so it is refused
//! before any backend sees it: it cannot be placed into a backend URL, and
//! a client cannot make one path answer 5xx where the other answers 404.

/// Length of the random part of an id.
pub const RANDOM_LEN: usize = 24;

/// The kinds of id a client may send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Charge,
    Refund,
    Disbursement,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Charge => "ch",
            IdKind::Refund => "re",
            IdKind::Disbursement => "po",
        }
    }

    /// Whether `id` has this kind's exact format.
    pub fn matches(self, id: &str) -> bool {
        let prefix = self.prefix();
        let Some(rest) = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
            return false;
        };
        rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

/// Longest client id the config accepts.
pub const CLIENT_ID_MAX: usize = 64;

/// A client id as `clients[].id` in the sidecar's config accepts it, and as
/// `paymeshctl` checks one before writing its etcd key: 1-64 characters of
/// `[A-Za-z0-9._-]`. It is a metric label, a header value and one etcd key
/// segment, so nothing else may be in it.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= CLIENT_ID_MAX && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_an_exact_format() {
        assert!(IdKind::Charge.matches("ch_0123456789abcdefghijKLMN"));
        assert!(IdKind::Refund.matches("re_0123456789abcdefghijKLMN"));
        assert!(IdKind::Disbursement.matches("po_0123456789abcdefghijKLMN"));
        for bad in [
            "",
            "ch_",
            "ch_ x",
            "ch_0123456789abcdefghijKLM",   // 23
            "ch_0123456789abcdefghijKLMNO", // 25
            "re_0123456789abcdefghijKLMN",  // another kind
            "ch-0123456789abcdefghijKLMN",
            "ch_0123456789abcdefghij_KLM",
            "ch_0123456789abcdefghijKLM\u{e9}",
            "ch_0123456789abcdefghi%2FKL",
            "CH_0123456789abcdefghijKLMN",
        ] {
            assert!(!IdKind::Charge.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn client_ids_are_single_key_segments() {
        assert!(valid_client_id("internal-billing"));
        assert!(valid_client_id("a.b_c-9"));
        assert!(valid_client_id(&"x".repeat(CLIENT_ID_MAX)));
        for bad in [
            "",
            "a/b",
            "a b",
            "a\nb",
            "caf\u{e9}",
            "\u{1F4B8}",
            "a\0",
            "a,b",
            "a=b",
            "\"a\"",
            &"x".repeat(CLIENT_ID_MAX + 1),
            &"x".repeat(1 << 20),
        ] {
            assert!(!valid_client_id(bad), "{bad:?}");
        }
    }
}
