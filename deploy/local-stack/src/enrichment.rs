//! Made-up but plausible enrichment data, derived only from the input email so that every run
//! on the same file produces the same results.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Builds the callback body the simulated partner sends for `input_email`. It holds a name from
/// the local part, the email's domain as the company domain, a work email on that domain, a
/// phone number in the unassigned `+1 555` area and a LinkedIn profile URL. It also holds one
/// field outside the contract (`match_confidence`), which the receiver keeps in `extra`. About
/// half of the bodies echo `tenant_id`, so both ways the results view finds a tenant are used.
pub fn callback_body(input_email: &str, tenant_id: &str) -> Value {
    let digest = Sha256::digest(input_email.trim().to_lowercase().as_bytes());
    let (local_part, domain) = split_email(input_email.trim());
    let domain = domain.to_lowercase();
    let words = name_words(local_part);

    let mut body = Map::new();
    body.insert("input_email".into(), json!(input_email));
    if !words.is_empty() {
        let name: Vec<String> = words.iter().map(|word| capitalize(word)).collect();
        body.insert("name".into(), json!(name.join(" ")));
        body.insert(
            "work_email".into(),
            json!(format!("{}@{domain}", words.join("."))),
        );
    }
    body.insert("company_domain".into(), json!(domain));
    body.insert("phone_number".into(), json!(phone_number(&digest)));
    body.insert("linkedin_url".into(), json!(linkedin_url(&words, &digest)));
    let confidence = 0.5 + f64::from(digest[2]) / 510.0;
    body.insert(
        "match_confidence".into(),
        json!((confidence * 100.0).round() / 100.0),
    );
    if digest[0].is_multiple_of(2) {
        body.insert("tenant_id".into(), json!(tenant_id));
    }
    Value::Object(body)
}

/// Splits at the last `@`; an address without one is all local part.
fn split_email(email: &str) -> (&str, &str) {
    email.rsplit_once('@').unwrap_or((email, ""))
}

/// Returns the lower-case alphabetic words of the local part, without a `+tag`: `jane.doe+news` gives
/// `["jane", "doe"]`.
fn name_words(local_part: &str) -> Vec<String> {
    let without_tag = local_part.split('+').next().unwrap_or_default();
    without_tag
        .split(['.', '_', '-'])
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphabetic())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Derives a North American number in area code 555, which is not assigned to any region. Odd
/// digests give the spaced form a person would type, which the receiver normalises to E.164.
fn phone_number(digest: &[u8]) -> String {
    let number = u64::from_be_bytes(digest[8..16].try_into().expect("8 bytes")) % 10_000_000;
    let digits = format!("{number:07}");
    if digest[1].is_multiple_of(2) {
        format!("+1555{digits}")
    } else {
        format!("+1 (555) {}-{}", &digits[..3], &digits[3..])
    }
}

fn linkedin_url(words: &[String], digest: &[u8]) -> String {
    let slug = if words.is_empty() {
        "member".to_string()
    } else {
        words.join("-")
    };
    format!(
        "https://www.linkedin.com/in/{slug}-{}",
        hex::encode(&digest[4..6])
    )
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn name_words_cases() {
        let cases = [
            ("jane.doe", vec!["jane", "doe"]),
            ("Jane_Doe+news", vec!["jane", "doe"]),
            ("j-doe42", vec!["j", "doe"]),
            ("12345", vec![]),
            ("", vec![]),
        ];
        for (local_part, expected) in cases {
            assert_eq!(
                name_words(local_part),
                expected,
                "local part {local_part:?}"
            );
        }
    }

    #[test]
    fn callback_body_for_known_email() {
        let body = callback_body("Jane.Doe@Example.com", "tenant-a");
        let digest = Sha256::digest(b"jane.doe@example.com");
        let number = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 10_000_000;
        let digits = format!("{number:07}");
        let expected_phone = if digest[1].is_multiple_of(2) {
            format!("+1555{digits}")
        } else {
            format!("+1 (555) {}-{}", &digits[..3], &digits[3..])
        };

        assert_eq!(body["input_email"], "Jane.Doe@Example.com");
        assert_eq!(body["name"], "Jane Doe");
        assert_eq!(body["work_email"], "jane.doe@example.com");
        assert_eq!(body["company_domain"], "example.com");
        assert_eq!(body["phone_number"], expected_phone.as_str());
        assert_eq!(
            body["linkedin_url"],
            format!(
                "https://www.linkedin.com/in/jane-doe-{}",
                hex::encode(&digest[4..6])
            )
            .as_str()
        );
        let echoed = body.get("tenant_id").cloned();
        let expected_echo = digest[0].is_multiple_of(2).then(|| json!("tenant-a"));
        assert_eq!(echoed, expected_echo);
    }

    #[test]
    fn callback_body_is_deterministic() {
        assert_eq!(
            callback_body("sam@example.org", "t"),
            callback_body("sam@example.org", "t")
        );
    }

    #[test]
    fn callback_body_without_name_words() {
        let body = callback_body("12345@example.org", "t");
        assert_eq!(body.get("name"), None);
        assert_eq!(body.get("work_email"), None);
        assert_eq!(body["company_domain"], "example.org");
        assert!(
            body["linkedin_url"]
                .as_str()
                .unwrap()
                .starts_with("https://www.linkedin.com/in/member-"),
            "{}",
            body["linkedin_url"]
        );
    }

    #[test]
    fn phone_number_is_e164_after_normalising() {
        for email in [
            "a@example.com",
            "b@example.com",
            "c@example.org",
            "d@example.org",
        ] {
            let body = callback_body(email, "t");
            let phone: String = body["phone_number"]
                .as_str()
                .unwrap()
                .chars()
                .filter(|c| !matches!(c, ' ' | '(' | ')' | '-'))
                .collect();
            assert_eq!(phone.len(), 12, "{phone}");
            assert!(phone.starts_with("+1555"), "{phone}");
            assert!(phone[1..].chars().all(|c| c.is_ascii_digit()), "{phone}");
        }
    }
}
