//! The one-command local run of the enrichment pipeline: the inbound receiver, the outbound
//! sender and the results sink in one process, on embedded backends, with a simulated partner.
//! It needs no Google account and talks only to 127.0.0.1.
//!
//! ```text
//! cargo run --release -p local-stack -- [FILE] [--rate 50] [--partner-failure-rate 0.3]
//! ```
//!
//! # What a run does
//!
//! 1. It copies FILE into the input bucket as `incoming/<tenant>/<file name>`. The default FILE
//!    is the bundled `sample/contacts.csv`: made-up contacts for two tenants with a few invalid
//!    and repeated rows. The tenant is `--tenant` (default `demo-tenant`) and applies to rows
//!    without a `tenant_id` of their own.
//! 2. It sends the sender an Eventarc CloudEvent `google.cloud.storage.object.v1.finalized`
//!    over HTTP. The sender reads the file and its local queue sends one signed
//!    `{"tenant_id", "input_email"}` request per valid unique row to the simulated partner, at
//!    most `--rate` requests per second, retries included.
//! 3. The partner ([`partner`]) verifies the Standard Webhooks signature, fails a share of the
//!    attempts on purpose (`--partner-failure-rate`, 500 or 429 with `Retry-After: 1`), and
//!    for each accepted request calls the receiver back, signed, after `--partner-delay-ms`,
//!    with enrichment made up from the email ([`enrichment`]).
//! 4. The receiver publishes each result to an in-process topic ([`push`]), which pushes it to
//!    the sink as a Pub/Sub push envelope and redelivers on any non-2xx answer.
//! 5. The sink stores a row in SQLite and archives the result as a JSON object.
//!
//! While it runs, a progress line on stderr shows each stage's count, updated at most four
//! times a second (once a second when stderr is not a terminal). At the end it writes a summary
//! table and where the data is to stderr, and with `--summary-json` one JSON object with the
//! counters to stdout.
//!
//! # Backends
//!
//! | production | local stand-in |
//! |---|---|
//! | Cloud Storage buckets | subfolders of the data folder (`--data-dir`, default `.local/`): `input/`, `archive/` |
//! | Pub/Sub topic and push subscription | [`push::PushTopic`] |
//! | Cloud Tasks queue | the sender's `local` queue, same policy |
//! | BigQuery dataset | [`warehouse::Warehouse`]: `warehouse.db`, tables from the BigQuery schema files and the `latest_results` view |
//! | the partner | [`partner::SimulatedPartner`] |
//!
//! The functions' JSON logs go to `local-stack.log` in the data folder.
//!
//! # Counters
//!
//! - `emails_read`: data rows of FILE, blank lines excluded, counted with the sender's own
//!   reader before the run. The sender writes one `deliveries` row for each.
//! - `requests_sent`: requests the simulated partner received, retries included.
//! - `results_received`: callbacks the receiver accepted with a 2xx.
//! - `rows_stored`: rows of this upload that the sender delivered and that have a row in the
//!   `results` table. The partner calls back with the request's `webhook-id`, which the
//!   receiver stores as `delivery_id`, so results join their delivery exactly.
//! - `failed`: rows whose delivery ended `failed` (retries used up, or a permanent error).
//! - `rejected`: rows not sent because the email is invalid or no tenant was found.
//! - `duplicates`: rows not sent because the same (tenant, email) came earlier in FILE.
//!
//! The run waits until no job, callback or message is in flight, or until the deadline (see
//! [`report::default_deadline`], or `--timeout-secs`). It exits with status 0 when
//! `rows_stored + failed + rejected + duplicates == emails_read` and `latest_results` has a row
//! for every delivered (tenant, email), with 1 when something was lost or the deadline passed,
//! and with 130 after Ctrl-C.
//!
//! # `--serve`
//!
//! Keeps the receiver, sender, sink and partner listening on 127.0.0.1 ports 8081 to 8084
//! (`--receiver-port`, `--sender-port`, `--sink-port`, `--partner-port`) and prints curl
//! commands: a bucket upload with its storage event, and a signed partner callback.
//!
//! # Querying the results
//!
//! ```text
//! sqlite3 -header -column .local/warehouse.db 'SELECT * FROM latest_results'
//! sqlite3 -header -column .local/warehouse.db 'SELECT status, COUNT(*) FROM deliveries GROUP BY status'
//! ```
//!
//! NOTE: a local bucket keeps no object metadata, so a file's tenant comes from its rows or its
//! path; and an object's generation is its file's modification time in nanoseconds, so copying
//! a file again makes a new generation, which the sender treats as a new file.

pub mod cli;
pub mod enrichment;
pub mod event;
pub mod instructions;
pub mod logs;
pub mod partner;
pub mod push;
pub mod report;
pub mod secrets;
pub mod stack;
pub mod warehouse;
