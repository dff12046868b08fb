//! The request body the outbound sender posts to a partner's webhook.

use serde::{Deserialize, Serialize};

/// One email to enrich for one tenant, serialised exactly as
/// `{"tenant_id":"...","input_email":"..."}` (fields in this order, nothing else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRequest {
    pub tenant_id: String,
    pub input_email: String,
}

impl OutboundRequest {
    pub fn new(tenant_id: impl Into<String>, input_email: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            input_email: input_email.into(),
        }
    }

    /// Serialises the request body.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of two strings always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_tenant_then_email() {
        let request = OutboundRequest::new("tenant-1", "jane.doe@example.com");
        assert_eq!(
            String::from_utf8(request.to_json_bytes()).unwrap(),
            r#"{"tenant_id":"tenant-1","input_email":"jane.doe@example.com"}"#
        );
    }

    #[test]
    fn deserialises_and_rejects_unknown_fields() {
        let parsed: OutboundRequest =
            serde_json::from_str(r#"{"input_email":"a@example.com","tenant_id":"t"}"#).unwrap();
        assert_eq!(parsed, OutboundRequest::new("t", "a@example.com"));

        let extra = serde_json::from_str::<OutboundRequest>(
            r#"{"tenant_id":"t","input_email":"a@example.com","x":1}"#,
        );
        assert!(extra.is_err());
    }
}
