//! Email address normalisation, shared by the inbound fields and the outbound sender.
//!
//! An address is valid when it is an RFC 5322 addr-spec (plus-addressing and quoted local
//! parts included) whose domain is a host name with at least one dot. Domain literals
//! (`a@[127.0.0.1]`), display-name forms (`Jane <jane@example.com>`), control characters and
//! invisible format characters (Unicode category Cf, such as zero-width spaces and bidi
//! controls) are invalid.
//!
//! Normalisation trims the address and lowercases the domain, and keeps an internationalised
//! domain in the form it was given: Unicode stays Unicode and punycode (`xn--`) stays
//! punycode. The local part keeps its case because RFC 5321 makes it case sensitive.

use email_address::{EmailAddress, Options};
use unicode_general_category::{GeneralCategory, get_general_category};

use crate::validation::ErrorCode;

/// Maximum length of an address in characters (RFC 5321 path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Normalises and validates one email address.
///
/// Returns the trimmed address with its domain lowercased, or the code of the first rule it
/// breaks: [`ErrorCode::Missing`] when it is empty after trimming, [`ErrorCode::TooLong`]
/// above [`MAX_EMAIL_CHARS`], and [`ErrorCode::InvalidEmail`] otherwise.
pub fn normalize_email(raw: &str) -> Result<String, ErrorCode> {
    let address = raw.trim();
    if address.is_empty() {
        return Err(ErrorCode::Missing);
    }
    if address.chars().count() > MAX_EMAIL_CHARS {
        return Err(ErrorCode::TooLong);
    }
    // The parser accepts any non-ASCII character in atoms, control and format characters
    // included. Format characters are invisible, so `a\u{200B}b@x.com` would look like `ab@x.com`
    // and a bidi override could show the address reversed.
    let hidden = |c: char| c.is_control() || get_general_category(c) == GeneralCategory::Format;
    if address.chars().any(hidden) {
        return Err(ErrorCode::InvalidEmail);
    }

    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    let parsed =
        EmailAddress::parse_with_options(address, options).map_err(|_| ErrorCode::InvalidEmail)?;

    // The parser allows every atext character (`_`, `!`, `#` and more) in domain labels, so
    // the domain is checked again against host name rules (UTS 46 with STD3 rules and DNS
    // length limits).
    let domain = parsed.domain();
    if idna::domain_to_ascii_strict(domain).is_err() {
        return Err(ErrorCode::InvalidEmail);
    }

    Ok(format!("{}@{}", parsed.local_part(), domain.to_lowercase()))
}

/// Returns the key under which two normalised addresses count as the same recipient: the
/// whole address lowercased. The outbound sender uses it for per-file de-duplication and for
/// the stable `webhook-id`.
pub fn dedupe_key(normalized: &str) -> String {
    normalized.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_email_table() {
        let cases: &[(&str, Result<&str, ErrorCode>)] = &[
            ("jane.doe@example.com", Ok("jane.doe@example.com")),
            ("  jane.doe@example.com \n", Ok("jane.doe@example.com")),
            ("Jane.Doe@Example.COM", Ok("Jane.Doe@example.com")),
            ("user+tag@example.com", Ok("user+tag@example.com")),
            (
                "\"john smith\"@example.com",
                Ok("\"john smith\"@example.com"),
            ),
            ("info@bücher.de", Ok("info@bücher.de")),
            ("info@BÜCHER.de", Ok("info@bücher.de")),
            ("info@xn--bcher-kva.de", Ok("info@xn--bcher-kva.de")),
            ("a@b.co", Ok("a@b.co")),
            ("a@sub.domain.example.org", Ok("a@sub.domain.example.org")),
            ("", Err(ErrorCode::Missing)),
            ("   ", Err(ErrorCode::Missing)),
            ("a@b", Err(ErrorCode::InvalidEmail)),
            ("a@@b.com", Err(ErrorCode::InvalidEmail)),
            ("a@b..com", Err(ErrorCode::InvalidEmail)),
            ("a@.b.com", Err(ErrorCode::InvalidEmail)),
            ("a@b.com.", Err(ErrorCode::InvalidEmail)),
            ("@example.com", Err(ErrorCode::InvalidEmail)),
            ("jane.example.com", Err(ErrorCode::InvalidEmail)),
            ("a@[127.0.0.1]", Err(ErrorCode::InvalidEmail)),
            ("a@[IPv6:::1]", Err(ErrorCode::InvalidEmail)),
            ("Jane <jane@example.com>", Err(ErrorCode::InvalidEmail)),
            ("<jane@example.com>", Err(ErrorCode::InvalidEmail)),
            ("jane doe@example.com", Err(ErrorCode::InvalidEmail)),
            ("a@exa_mple.com", Err(ErrorCode::InvalidEmail)),
            ("a@exa!mple.com", Err(ErrorCode::InvalidEmail)),
            ("a@-example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{7}b@example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{85}b@example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{200B}b@example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{200D}b@example.com", Err(ErrorCode::InvalidEmail)),
            ("\u{202E}moc.elpmaxe@a", Err(ErrorCode::InvalidEmail)),
            ("a@\u{2066}example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{FEFF}@example.com", Err(ErrorCode::InvalidEmail)),
            ("a\u{AD}b@example.com", Err(ErrorCode::InvalidEmail)),
            ("a@exam\u{200B}ple.com", Err(ErrorCode::InvalidEmail)),
            ("a.@example.com", Err(ErrorCode::InvalidEmail)),
            ("a..b@example.com", Err(ErrorCode::InvalidEmail)),
        ];
        for (raw, expected) in cases {
            let expected = expected.map(str::to_owned);
            assert_eq!(normalize_email(raw), expected, "input {raw:?}");
        }
    }

    #[test]
    fn normalize_email_length_limit() {
        // 64-character local part and labels of at most 63 characters: only the total
        // length decides.
        let local = "l".repeat(64);
        let label = "d".repeat(61);
        let at_limit = format!("{local}@{label}.{label}.{}.com", "e".repeat(61));
        assert_eq!(at_limit.chars().count(), 254);
        assert_eq!(normalize_email(&at_limit), Ok(at_limit.clone()));

        let over_limit = format!("{local}@{label}.{label}.{}.com", "e".repeat(62));
        assert_eq!(normalize_email(&over_limit), Err(ErrorCode::TooLong));
    }

    #[test]
    fn normalize_email_is_idempotent() {
        for raw in [
            "Jane.Doe@Example.COM",
            "info@BÜCHER.de",
            "user+tag@example.com",
        ] {
            let once = normalize_email(raw).unwrap();
            assert_eq!(normalize_email(&once), Ok(once.clone()), "input {raw:?}");
        }
    }

    #[test]
    fn dedupe_key_lowercases_whole_address() {
        assert_eq!(dedupe_key("Jane.Doe@example.com"), "jane.doe@example.com");
        assert_eq!(dedupe_key("ÄNNE@bücher.de"), "änne@bücher.de");
    }
}
