//! Normalisers for the optional inbound fields. Each one takes a trimmed, non-empty string
//! and returns the normalised value or the [`ErrorCode`] of the rule it breaks.

use url::{Host, Url};

use crate::validation::ErrorCode;

/// Maximum length of `linkedin_url`, before and after normalisation, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// Maximum length of the raw `company_domain` input (a pasted URL is allowed), in characters.
pub const MAX_DOMAIN_INPUT_CHARS: usize = 2048;
/// Maximum length of `name`, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Maximum length of `tenant_id`, in characters.
pub const MAX_TENANT_ID_CHARS: usize = 128;

/// Minimum and maximum number of digits of an E.164 number, country code included.
pub const E164_MIN_DIGITS: usize = 7;
pub const E164_MAX_DIGITS: usize = 15;

const LINKEDIN_DOMAIN: &str = "linkedin.com";

/// Signature shared by the field normalisers: trimmed, non-empty input to normalised value.
pub type Normalizer = fn(&str) -> Result<String, ErrorCode>;

/// Normalises a phone number to E.164.
///
/// Whitespace, dashes, dots and parentheses are removed; what remains must be `+`, a
/// non-zero digit, and 7 to 15 digits in all. A national or `00`-prefixed number is
/// rejected rather than guessed at, and letters are never turned into digits.
pub fn normalize_phone_number(raw: &str) -> Result<String, ErrorCode> {
    let compact: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();

    let Some(digits) = compact.strip_prefix('+') else {
        return Err(ErrorCode::InvalidE164);
    };
    let digit_count_ok = (E164_MIN_DIGITS..=E164_MAX_DIGITS).contains(&digits.len());
    let all_digits = digits.bytes().all(|b| b.is_ascii_digit());
    if !digit_count_ok || !all_digits || digits.starts_with('0') {
        return Err(ErrorCode::InvalidE164);
    }
    Ok(compact)
}

/// Normalises a LinkedIn profile or company URL.
///
/// A missing scheme becomes `https://`. The URL must be http or https without user name or
/// password, and its host must be a valid DNS name equal to `linkedin.com` or a subdomain of
/// it. The result is the URL in the WHATWG serialisation of the `url` crate (lowercase host,
/// `/` path when empty).
pub fn normalize_linkedin_url(raw: &str) -> Result<String, ErrorCode> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(ErrorCode::TooLong);
    }
    let url = parse_web_url(raw, "https").ok_or(ErrorCode::InvalidUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ErrorCode::InvalidUrl);
    }

    let on_linkedin = match url.host() {
        Some(Host::Domain(host)) => {
            host == LINKEDIN_DOMAIN
                || host
                    .strip_suffix(LINKEDIN_DOMAIN)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        }
        _ => false,
    };
    if !on_linkedin {
        return Err(ErrorCode::NotLinkedin);
    }
    // The URL parser keeps empty labels (`.linkedin.com`, `x..linkedin.com`) and labels that
    // DNS does not allow, so the host is checked with STD3 rules as company domains are.
    if url
        .host_str()
        .is_none_or(|host| idna::domain_to_ascii_strict(host).is_err())
    {
        return Err(ErrorCode::InvalidUrl);
    }

    let normalized = String::from(url);
    if normalized.chars().count() > MAX_URL_CHARS {
        return Err(ErrorCode::TooLong);
    }
    Ok(normalized)
}

/// Normalises a company domain to a lowercase host name.
///
/// A pasted URL (`https://www.Company.com/about`) is reduced to its host, and a leading
/// `www.` and a trailing dot are removed. The host must be a DNS name with at least one dot,
/// so IP addresses are rejected. An internationalised domain is returned in its ASCII
/// (punycode) form, as URL hosts are.
pub fn normalize_company_domain(raw: &str) -> Result<String, ErrorCode> {
    if raw.chars().count() > MAX_DOMAIN_INPUT_CHARS {
        return Err(ErrorCode::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(ErrorCode::InvalidDomain);
    }
    let url = parse_web_url(raw, "http").ok_or(ErrorCode::InvalidDomain)?;
    // `user@company.com` parses as a URL with a user name, but it is an email, not a domain.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ErrorCode::InvalidDomain);
    }
    let Some(Host::Domain(host)) = url.host() else {
        return Err(ErrorCode::InvalidDomain);
    };

    let host = host.strip_suffix('.').unwrap_or(host);
    let host = match host.strip_prefix("www.") {
        Some(rest) if rest.contains('.') => rest,
        _ => host,
    };
    // The URL parser accepts labels that DNS does not (`_`, leading hyphens, empty labels),
    // so the host is checked again with STD3 rules and DNS length limits.
    if !host.contains('.') || idna::domain_to_ascii_strict(host).is_err() {
        return Err(ErrorCode::InvalidDomain);
    }
    Ok(host.to_owned())
}

/// Checks a person's name: at most [`MAX_NAME_CHARS`] characters, no control characters and
/// no bidi embedding, override or isolate controls.
pub fn normalize_name(raw: &str) -> Result<String, ErrorCode> {
    check_plain_text(raw, MAX_NAME_CHARS)
}

/// Checks a tenant id: at most [`MAX_TENANT_ID_CHARS`] characters, no control characters and
/// no bidi embedding, override or isolate controls.
pub fn normalize_tenant_id(raw: &str) -> Result<String, ErrorCode> {
    check_plain_text(raw.trim(), MAX_TENANT_ID_CHARS)
}

fn check_plain_text(value: &str, max_chars: usize) -> Result<String, ErrorCode> {
    if value.chars().count() > max_chars {
        return Err(ErrorCode::TooLong);
    }
    if value.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(ErrorCode::ControlCharacters);
    }
    Ok(value.to_owned())
}

/// Checks for the explicit bidi formatting characters of Unicode's bidi algorithm (UAX #9):
/// embeddings and overrides U+202A to U+202E, and isolates U+2066 to U+2069. They can make
/// text display in an order other than the stored one. Zero-width joiners and the
/// left-to-right and right-to-left marks stay allowed, because some scripts need them in names.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Parses `raw` as an http or https URL, prefixing `default_scheme` when it has none.
/// Returns `None` for any other scheme or an unparsable URL.
fn parse_web_url(raw: &str, default_scheme: &str) -> Option<Url> {
    let with_scheme = if has_scheme(raw) {
        raw.to_owned()
    } else if let Some(rest) = raw.strip_prefix("//") {
        format!("{default_scheme}://{rest}")
    } else {
        format!("{default_scheme}://{raw}")
    };
    let url = Url::parse(&with_scheme).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Checks whether `raw` starts with `scheme://` (RFC 3986 scheme syntax).
fn has_scheme(raw: &str) -> bool {
    let Some((scheme, _)) = raw.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_table(normalize: Normalizer, cases: &[(&str, Result<&str, ErrorCode>)]) {
        for (raw, expected) in cases {
            let expected = expected.map(str::to_owned);
            assert_eq!(normalize(raw), expected, "input {raw:?}");
        }
    }

    #[test]
    fn phone_number_table() {
        check_table(
            normalize_phone_number,
            &[
                ("+1234567890", Ok("+1234567890")),
                ("+1 (415) 555-2671", Ok("+14155552671")),
                ("+44 20.7946.0958", Ok("+442079460958")),
                ("+1\u{a0}415\t5552671", Ok("+14155552671")),
                ("+1234567", Ok("+1234567")),
                ("+123456789012345", Ok("+123456789012345")),
                ("0044 20 7946 0958", Err(ErrorCode::InvalidE164)),
                ("4155552671", Err(ErrorCode::InvalidE164)),
                ("+0123456789", Err(ErrorCode::InvalidE164)),
                ("+12", Err(ErrorCode::InvalidE164)),
                ("+123456", Err(ErrorCode::InvalidE164)),
                ("+1234567890123456", Err(ErrorCode::InvalidE164)),
                ("+1-800-FLOWERS", Err(ErrorCode::InvalidE164)),
                ("+1 415 555 2671 ext 5", Err(ErrorCode::InvalidE164)),
                ("++14155552671", Err(ErrorCode::InvalidE164)),
                ("1+4155552671", Err(ErrorCode::InvalidE164)),
                ("+１４１５５５５２６７１", Err(ErrorCode::InvalidE164)),
                ("+", Err(ErrorCode::InvalidE164)),
            ],
        );
    }

    #[test]
    fn linkedin_url_table() {
        check_table(
            normalize_linkedin_url,
            &[
                (
                    "https://linkedin.com/in/user",
                    Ok("https://linkedin.com/in/user"),
                ),
                ("linkedin.com/in/x", Ok("https://linkedin.com/in/x")),
                ("//linkedin.com/in/x", Ok("https://linkedin.com/in/x")),
                ("www.linkedin.com/in/x", Ok("https://www.linkedin.com/in/x")),
                (
                    "http://uk.linkedin.com/in/x",
                    Ok("http://uk.linkedin.com/in/x"),
                ),
                (
                    "HTTPS://WWW.LinkedIn.COM/in/Jane",
                    Ok("https://www.linkedin.com/in/Jane"),
                ),
                ("https://linkedin.com", Ok("https://linkedin.com/")),
                (
                    "https://www.linkedin.com/in/x?trk=a#top",
                    Ok("https://www.linkedin.com/in/x?trk=a#top"),
                ),
                (
                    "linkedin.com/in/x?next=https://evil.example",
                    Ok("https://linkedin.com/in/x?next=https://evil.example"),
                ),
                ("https://evil.example/in/x", Err(ErrorCode::NotLinkedin)),
                (
                    "https://linkedin.com.evil.example/in/x",
                    Err(ErrorCode::NotLinkedin),
                ),
                (
                    "https://evil-linkedin.com/in/x",
                    Err(ErrorCode::NotLinkedin),
                ),
                ("https://evillinkedin.com/in/x", Err(ErrorCode::NotLinkedin)),
                (
                    "https://linkedin.com@evil.example/in/x",
                    Err(ErrorCode::InvalidUrl),
                ),
                (
                    "https://user:pass@linkedin.com/in/x",
                    Err(ErrorCode::InvalidUrl),
                ),
                (
                    "https://evil.example#@linkedin.com",
                    Err(ErrorCode::NotLinkedin),
                ),
                (
                    "https://linkedin.com%2eevil.example/",
                    Err(ErrorCode::NotLinkedin),
                ),
                ("https://108.174.10.10/in/x", Err(ErrorCode::NotLinkedin)),
                ("ftp://linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("javascript:alert(1)", Err(ErrorCode::InvalidUrl)),
                ("https://", Err(ErrorCode::InvalidUrl)),
                ("https://linked in.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("https://.linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("https://x..linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("https://..linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("https://-x.linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                ("https://x_y.linkedin.com/in/x", Err(ErrorCode::InvalidUrl)),
                (
                    "https://a-b.uk.linkedin.com/in/x",
                    Ok("https://a-b.uk.linkedin.com/in/x"),
                ),
            ],
        );
    }

    #[test]
    fn linkedin_url_length_limit() {
        let prefix = "https://linkedin.com/in/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_URL_CHARS - prefix.len()));
        assert_eq!(normalize_linkedin_url(&at_limit), Ok(at_limit.clone()));

        let over_limit = format!("{at_limit}a");
        assert_eq!(normalize_linkedin_url(&over_limit), Err(ErrorCode::TooLong));

        // Spaces are percent-encoded by the URL parser, so the normalised form can pass
        // the limit even when the input does not.
        let grows = format!("{prefix}{}", " a".repeat(1000));
        assert_eq!(normalize_linkedin_url(&grows), Err(ErrorCode::TooLong));
    }

    #[test]
    fn company_domain_table() {
        check_table(
            normalize_company_domain,
            &[
                ("company.com", Ok("company.com")),
                ("https://www.Company.com/about", Ok("company.com")),
                ("www.company.com", Ok("company.com")),
                ("Company.COM.", Ok("company.com")),
                ("http://company.com:8080/x?y=1", Ok("company.com")),
                ("sub.company.co.uk/path", Ok("sub.company.co.uk")),
                ("www.com", Ok("www.com")),
                ("bücher.de", Ok("xn--bcher-kva.de")),
                ("xn--bcher-kva.de", Ok("xn--bcher-kva.de")),
                ("company", Err(ErrorCode::InvalidDomain)),
                ("localhost", Err(ErrorCode::InvalidDomain)),
                ("exa_mple.com", Err(ErrorCode::InvalidDomain)),
                ("-company.com", Err(ErrorCode::InvalidDomain)),
                ("company..com", Err(ErrorCode::InvalidDomain)),
                ("192.168.0.1", Err(ErrorCode::InvalidDomain)),
                ("[::1]", Err(ErrorCode::InvalidDomain)),
                ("jane@company.com", Err(ErrorCode::InvalidDomain)),
                ("ftp://company.com", Err(ErrorCode::InvalidDomain)),
                ("company com", Err(ErrorCode::InvalidDomain)),
                ("company.com\n", Err(ErrorCode::InvalidDomain)),
                ("https://", Err(ErrorCode::InvalidDomain)),
            ],
        );
    }

    #[test]
    fn company_domain_length_limits() {
        let long_input = format!("https://company.com/{}", "a".repeat(MAX_DOMAIN_INPUT_CHARS));
        assert_eq!(
            normalize_company_domain(&long_input),
            Err(ErrorCode::TooLong)
        );

        // DNS allows 63 characters per label.
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(
            normalize_company_domain(&long_label),
            Err(ErrorCode::InvalidDomain)
        );
    }

    #[test]
    fn name_table() {
        let at_limit = "é".repeat(MAX_NAME_CHARS);
        let over_limit = "é".repeat(MAX_NAME_CHARS + 1);
        check_table(
            normalize_name,
            &[
                ("Jane Doe", Ok("Jane Doe")),
                ("José Ñúñez-O'Brien", Ok("José Ñúñez-O'Brien")),
                ("李小龍", Ok("李小龍")),
                (at_limit.as_str(), Ok(at_limit.as_str())),
                (over_limit.as_str(), Err(ErrorCode::TooLong)),
                ("Jane\nDoe", Err(ErrorCode::ControlCharacters)),
                ("Jane\tDoe", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{0}Doe", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{7f}Doe", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{9b}Doe", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{202E}eoD", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{202A}Doe", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{2066}Doe\u{2069}", Err(ErrorCode::ControlCharacters)),
                ("Jane\u{2068}Doe", Err(ErrorCode::ControlCharacters)),
                ("می\u{200C}خواهم", Ok("می\u{200C}خواهم")),
                ("Jane\u{200F}Doe", Ok("Jane\u{200F}Doe")),
            ],
        );
    }

    #[test]
    fn tenant_id_table() {
        let at_limit = "t".repeat(MAX_TENANT_ID_CHARS);
        let over_limit = "t".repeat(MAX_TENANT_ID_CHARS + 1);
        check_table(
            normalize_tenant_id,
            &[
                ("tenant-1", Ok("tenant-1")),
                (" tenant-1 ", Ok("tenant-1")),
                (at_limit.as_str(), Ok(at_limit.as_str())),
                (over_limit.as_str(), Err(ErrorCode::TooLong)),
                ("tenant\r1", Err(ErrorCode::ControlCharacters)),
                ("tenant\u{202E}1", Err(ErrorCode::ControlCharacters)),
            ],
        );
    }

    #[test]
    fn normalisers_are_idempotent() {
        let cases: [(Normalizer, &str); 4] = [
            (normalize_phone_number, "+1 (415) 555-2671"),
            (normalize_linkedin_url, "LinkedIn.com/in/X"),
            (normalize_company_domain, "https://www.Bücher.de/about"),
            (normalize_name, "Jane Doe"),
        ];
        for (normalize, raw) in cases {
            let once = normalize(raw).unwrap();
            assert_eq!(normalize(&once), Ok(once.clone()), "input {raw:?}");
        }
    }
}
