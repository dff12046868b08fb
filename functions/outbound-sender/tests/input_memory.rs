//! Memory bound of the input reader, measured by the peak resident set size of this test
//! process (`VmHWM` in `/proc/self/status`, so Linux only).
//!
//! This file holds one test only, because the peak covers every thread of the test binary and
//! a second test running at the same time would add its own memory.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipEncoder;
use outbound_sender::input::{InputRow, MAX_LINE_BYTES, MAX_RAW_CHARS, RowContent, RowReader};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

/// Returns the peak resident set size of this process, in bytes.
fn peak_rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("a VmHWM line in /proc/self/status");
    let kib: usize = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmHWM in kB");
    kib * 1024
}

/// A file generated while it is read: `prefix`, then `filler` bytes of `a`, so a large input
/// never sits in memory.
struct GeneratedFile {
    prefix: Vec<u8>,
    prefix_sent: usize,
    filler_left: usize,
}

impl AsyncRead for GeneratedFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix_sent < self.prefix.len() {
            let rest = &self.prefix[self.prefix_sent..];
            let count = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..count]);
            self.prefix_sent += count;
            return Poll::Ready(Ok(()));
        }
        let count = self.filler_left.min(buf.remaining());
        buf.initialize_unfilled_to(count).fill(b'a');
        buf.advance(count);
        self.filler_left -= count;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn gzip_csv_unclosed_quote_stays_in_bounded_memory() {
    const FILLER_BYTES: usize = 64 * 1024 * 1024;
    const ALLOWED_GROWTH_BYTES: usize = 16 * 1024 * 1024;

    let file = GeneratedFile {
        prefix: b"email\n\"".to_vec(),
        prefix_sent: 0,
        filler_left: FILLER_BYTES,
    };
    let gzip = GzipEncoder::new(BufReader::new(file));

    let baseline = peak_rss_bytes();

    let mut reader = RowReader::open(gzip, "incoming/t-1/huge.csv.gz")
        .await
        .unwrap();
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row().await.unwrap() {
        rows.push(row);
    }

    let growth = peak_rss_bytes() - baseline;
    assert!(
        growth < ALLOWED_GROWTH_BYTES,
        "reading a {FILLER_BYTES}-byte record raised the peak RSS by {growth} bytes"
    );
    assert_eq!(
        rows,
        vec![InputRow {
            line: 2,
            content: RowContent::Unreadable {
                raw: "a".repeat(MAX_RAW_CHARS),
                reason: format!(
                    "the record is longer than {MAX_LINE_BYTES} bytes or has more than 1024 fields"
                ),
            },
        }]
    );
}
