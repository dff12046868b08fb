//! Validation errors: every failing field with a stable machine code and a message.
//!
//! Messages name the field and the expected form but never repeat the submitted value, so
//! an error list can be logged and returned to a partner without leaking personal data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable machine code of one validation failure, serialised in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A required field is absent, empty or null.
    Missing,
    /// The field has a JSON type other than the expected one.
    WrongType,
    /// Not an addr-spec email address with a dotted domain.
    InvalidEmail,
    /// Not an E.164 phone number after removing separators.
    InvalidE164,
    /// Not an absolute http or https URL.
    InvalidUrl,
    /// A valid URL whose host is neither `linkedin.com` nor one of its subdomains.
    NotLinkedin,
    /// Not a host name with at least one dot.
    InvalidDomain,
    /// Longer than the field's maximum length.
    TooLong,
    /// Contains a control character such as a newline or tab.
    ControlCharacters,
    /// `extra` has more keys than allowed.
    TooManyFields,
    /// `extra` (or a whole body) is larger or more deeply nested than allowed.
    TooLarge,
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is valid JSON but not an object.
    NotAnObject,
}

impl ErrorCode {
    /// Returns the serialised form, for example `invalid_e164`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Missing => "missing",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidE164 => "invalid_e164",
            ErrorCode::InvalidUrl => "invalid_url",
            ErrorCode::NotLinkedin => "not_linkedin",
            ErrorCode::InvalidDomain => "invalid_domain",
            ErrorCode::TooLong => "too_long",
            ErrorCode::ControlCharacters => "control_characters",
            ErrorCode::TooManyFields => "too_many_fields",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::NotAnObject => "not_an_object",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing field, serialised as `{"field","code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The top-level field name, `extra` for the unknown-field limits, or `body` when the
    /// body itself is not a JSON object.
    pub field: String,
    pub code: ErrorCode,
    /// A plain English sentence naming the problem and the expected form.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.field, self.code, self.message)
    }
}

/// Every failing field of one payload, in field order, serialised as a JSON array of
/// [`FieldError`]. A list that this crate returns as an error is never empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a list of one error.
    pub fn single(error: FieldError) -> Self {
        Self {
            errors: vec![error],
        }
    }

    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.errors
    }

    /// Returns the codes of the errors reported for `field`, in order.
    pub fn codes_for(&self, field: &str) -> Vec<ErrorCode> {
        self.errors
            .iter()
            .filter(|error| error.field == field)
            .map(|error| error.code)
            .collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} invalid field(s)", self.errors.len())?;
        for (index, error) in self.errors.iter().enumerate() {
            let separator = if index == 0 { ": " } else { "; " };
            write!(f, "{separator}{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl From<FieldError> for ValidationErrors {
    fn from(error: FieldError) -> Self {
        Self::single(error)
    }
}

impl IntoIterator for ValidationErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialise_to_stable_names() {
        let cases = [
            (ErrorCode::Missing, "missing"),
            (ErrorCode::WrongType, "wrong_type"),
            (ErrorCode::InvalidEmail, "invalid_email"),
            (ErrorCode::InvalidE164, "invalid_e164"),
            (ErrorCode::InvalidUrl, "invalid_url"),
            (ErrorCode::NotLinkedin, "not_linkedin"),
            (ErrorCode::InvalidDomain, "invalid_domain"),
            (ErrorCode::TooLong, "too_long"),
            (ErrorCode::ControlCharacters, "control_characters"),
            (ErrorCode::TooManyFields, "too_many_fields"),
            (ErrorCode::TooLarge, "too_large"),
            (ErrorCode::InvalidJson, "invalid_json"),
            (ErrorCode::NotAnObject, "not_an_object"),
        ];
        for (code, expected) in cases {
            assert_eq!(serde_json::to_value(code).unwrap(), expected, "{code:?}");
            assert_eq!(code.as_str(), expected, "{code:?}");
        }
    }

    #[test]
    fn field_error_serialises_three_keys() {
        let error = FieldError::new("phone_number", ErrorCode::InvalidE164, "Bad.");
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"field":"phone_number","code":"invalid_e164","message":"Bad."}"#
        );
    }

    #[test]
    fn errors_serialise_as_array_and_display_all() {
        let mut errors = ValidationErrors::new();
        errors.push(FieldError::new(
            "input_email",
            ErrorCode::Missing,
            "Required.",
        ));
        errors.push(FieldError::new("name", ErrorCode::TooLong, "Too long."));

        assert_eq!(
            serde_json::to_value(&errors).unwrap(),
            serde_json::json!([
                {"field": "input_email", "code": "missing", "message": "Required."},
                {"field": "name", "code": "too_long", "message": "Too long."},
            ])
        );
        assert_eq!(
            errors.to_string(),
            "2 invalid field(s): input_email (missing): Required.; name (too_long): Too long."
        );
        assert_eq!(errors.codes_for("name"), vec![ErrorCode::TooLong]);
    }
}
