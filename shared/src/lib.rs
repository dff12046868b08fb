//! Payload types of the enrichment webhooks, shared by the three functions: the outbound
//! request, the inbound result with its normalisation and validation rules, the versioned
//! Pub/Sub record, and the BigQuery rows with the table schemas they must match.
//!
//! The crate is pure: it does no I/O, reads no environment variables and never reads the
//! clock. Callers pass every time in.

pub mod email;
pub mod fields;
pub mod outbound;
pub mod record;
pub mod result;
pub mod rows;
pub mod schemas;
pub mod validation;

pub use outbound::OutboundRequest;
pub use record::{RecordError, ResultRecord, SCHEMA_VERSION};
pub use result::EnrichmentResult;
pub use rows::{DeliveryRow, DeliveryStatus, ResultRow};
pub use validation::{ErrorCode, FieldError, ValidationErrors};
