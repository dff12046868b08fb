//! Runs the `local-stack` binary on the bundled sample and checks its counters, exit status
//! and warehouse.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use enrichment_payload::email::normalize_email;
use local_stack::partner::fault_for;
use local_stack::report::SENDER_MAX_RETRIES;
use pretty_assertions::assert_eq;
use rusqlite::Connection;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_local-stack");

fn run(data_dir: &Path, flags: &[&str]) -> Output {
    Command::new(BINARY)
        .args(flags)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("the local-stack binary runs")
}

fn summary(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON object ({error}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn open_warehouse(data_dir: &Path) -> Connection {
    Connection::open(data_dir.join("warehouse.db")).unwrap()
}

/// `(tenant_id, lower-case input_email)` of every `latest_results` row.
fn view_keys(connection: &Connection) -> Vec<(String, String)> {
    let mut statement = connection
        .prepare(
            "SELECT tenant_id, lower(input_email) FROM latest_results \
             ORDER BY tenant_id, lower(input_email)",
        )
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Returns the 33 valid unique (tenant, email) pairs of the sample, each email as the sender
/// sends it: trimmed, with the domain in lower case.
fn sample_pairs() -> BTreeSet<(String, String)> {
    let acme = [
        "jane.doe@example.com",
        "john.roe@example.com",
        "mira.okafor@example.org",
        "tomas.lindqvist@example.net",
        "priya_raman@example.com",
        "felix.hartmann@example.org",
        "noor.haddad@example.org",
        "lena.kowalski@example.com",
        "diego-ferreira@example.net",
        "hana.sato@example.com",
        "owen.mcbride@example.org",
        "ines.moreau+newsletter@example.com",
        "Kofi.Mensah@example.com",
        "sara.lindgren@example.org",
        "yusuf.demir@example.net",
        "clara.bianchi@example.com",
    ];
    let globex = [
        "amara.nwosu@example.org",
        "leo.fischer@example.com",
        "rosa.delgado@example.org",
        "ivan.petrov@example.net",
        "maya.cohen@example.com",
        "nils.berg@example.org",
        "zara.ahmed@example.com",
        "theo.laurent@example.net",
        "lucia.romero@example.org",
        "ethan.walsh@example.com",
        "jane.doe@example.com",
        "aiko.tanaka@example.org",
        "jurgen.weiss@bücher.example",
        "omar.farouk@example.com",
        "elif.yilmaz@example.net",
    ];
    let demo = ["ruth.nakamura@example.org", "pablo.ortega@example.com"];

    let mut pairs = BTreeSet::new();
    for (tenant, emails) in [
        ("acme", &acme[..]),
        ("globex", &globex[..]),
        ("demo-tenant", &demo[..]),
    ] {
        for email in emails {
            pairs.insert((tenant.to_string(), email.to_string()));
        }
    }
    pairs
}

#[test]
fn sample_run_stores_every_valid_email() {
    let data_dir = tempfile::tempdir().unwrap();

    let output = run(
        data_dir.path(),
        &["--rate", "50", "--partner-delay-ms", "20", "--summary-json"],
    );

    assert_eq!(
        summary(&output),
        json!({
            "emails_read": 39,
            "requests_sent": 33,
            "results_received": 33,
            "rows_stored": 33,
            "failed": 0,
            "rejected": 3,
            "duplicates": 3,
        })
    );
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SELECT * FROM latest_results"),
        "stderr lacks the query hint:\n{stderr}"
    );

    let connection = open_warehouse(data_dir.path());
    let keys: BTreeSet<(String, String)> = view_keys(&connection).into_iter().collect();
    let expected: BTreeSet<(String, String)> = sample_pairs()
        .into_iter()
        .map(|(tenant, email)| (tenant, email.to_lowercase()))
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(view_keys(&connection).len(), 33);
    let archived = std::fs::read_dir(
        data_dir
            .path()
            .join("archive/results/partner=simulated-partner"),
    )
    .unwrap()
    .map(|day| std::fs::read_dir(day.unwrap().path()).unwrap().count())
    .sum::<usize>();
    assert_eq!(archived, 33);
}

#[test]
fn second_run_in_same_folder_stores_again() {
    let data_dir = tempfile::tempdir().unwrap();
    let flags = ["--rate", "50", "--partner-delay-ms", "20", "--summary-json"];

    let first = run(data_dir.path(), &flags);
    let second = run(data_dir.path(), &flags);

    assert_eq!(first.status.code(), Some(0));
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(summary(&second)["rows_stored"], 33);
    let connection = open_warehouse(data_dir.path());
    let results: i64 = connection
        .query_row("SELECT COUNT(*) FROM results", [], |row| row.get(0))
        .unwrap();
    assert_eq!(results, 66);
    assert_eq!(view_keys(&connection).len(), 33);
}

/// Attempts the partner makes the sender use for one email under `seed`: the first attempt
/// that is not failed on purpose, or every attempt when all of them are.
fn expected_attempts(seed: u64, tenant: &str, email: &str, rate: f64) -> (u64, bool) {
    let max_attempts = u64::from(SENDER_MAX_RETRIES) + 1;
    for attempt in 1..=max_attempts {
        if fault_for(seed, tenant, email, attempt, rate).is_none() {
            return (attempt, true);
        }
    }
    (max_attempts, false)
}

#[test]
fn failure_run_matches_the_seed() {
    let data_dir = tempfile::tempdir().unwrap();
    let (seed, rate) = (5, 0.5);

    let output = run(
        data_dir.path(),
        &[
            "--rate",
            "50",
            "--partner-delay-ms",
            "20",
            "--partner-failure-rate",
            "0.5",
            "--retry-base-ms",
            "20",
            "--seed",
            "5",
            "--summary-json",
        ],
    );

    let mut requests = 0;
    let mut delivered = 0;
    let mut failed = 0;
    for (tenant, email) in sample_pairs() {
        assert_eq!(normalize_email(&email).as_deref(), Ok(email.as_str()));
        let (attempts, succeeded) = expected_attempts(seed, &tenant, &email, rate);
        requests += attempts;
        if succeeded {
            delivered += 1;
        } else {
            failed += 1;
        }
    }
    assert!(failed > 0, "seed {seed} fails no email; choose another");
    assert_eq!(
        summary(&output),
        json!({
            "emails_read": 39,
            "requests_sent": requests,
            "results_received": delivered,
            "rows_stored": delivered,
            "failed": failed,
            "rejected": 3,
            "duplicates": 3,
        })
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn deadline_exits_with_failure() {
    let data_dir = tempfile::tempdir().unwrap();

    let output = run(data_dir.path(), &["--timeout-secs", "1", "--summary-json"]);

    assert_eq!(output.status.code(), Some(1));
    let counters = summary(&output);
    assert_eq!(counters["emails_read"], 39);
    assert!(counters["rows_stored"].as_u64().unwrap() < 33, "{counters}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Timed out:"), "{stderr}");
}

#[test]
fn file_without_email_column_is_an_error() {
    let data_dir = tempfile::tempdir().unwrap();
    let file = data_dir.path().join("people.csv");
    std::fs::write(&file, "name,phone\nJane,+15550100199\n").unwrap();

    let output = run(data_dir.path(), &[file.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "local-stack: reading people.csv as an input file: the CSV header has no input_email or \
         email column (it has 2 columns); the first record must name the columns\n"
    );
}

/// Four ports that were free a moment ago.
fn free_ports() -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// Stops the `--serve` process on drop, so a failed assert does not leave it running.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Returns the indented lines after the line that contains `header`, up to the next blank
/// line after them, unindented.
fn block_after(text: &str, header: &str) -> String {
    let mut lines = text
        .lines()
        .skip_while(|line| !line.contains(header))
        .skip(1);
    let block: Vec<&str> = lines
        .by_ref()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| !line.trim().is_empty())
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect();
    block.join("\n")
}

fn bash(script: &str, directory: &Path) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(directory)
        .output()
        .unwrap();
    assert!(output.status.success(), "{script}\n{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_commands_work() {
    let data_dir = tempfile::tempdir().unwrap();
    let repository: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ports = free_ports();
    let mut child = Command::new(BINARY)
        .args(["--serve", "--rate", "50", "--partner-delay-ms", "20"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--receiver-port", &ports[0].to_string()])
        .args(["--sender-port", &ports[1].to_string()])
        .args(["--sink-port", &ports[2].to_string()])
        .args(["--partner-port", &ports[3].to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);

    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Logs:") {
            break;
        }
    }
    assert!(
        banner.contains(&format!("receiver  http://127.0.0.1:{}/", ports[0])),
        "{banner}"
    );

    let upload = bash(&block_after(&banner, "Upload a file"), &repository);
    assert!(upload.starts_with("HTTP/1.1 200"), "{upload}");
    assert!(upload.contains("\"enqueued\":33"), "{upload}");
    let connection = open_warehouse(data_dir.path());
    wait_for("33 rows in latest_results", Duration::from_secs(60), || {
        view_keys(&connection).len() == 33
    });

    let callback = bash(
        &block_after(&banner, "signed partner callback"),
        &repository,
    );
    assert!(callback.starts_with("HTTP/1.1 200"), "{callback}");
    assert!(callback.contains("\"status\":\"success\""), "{callback}");
    // The manual result names no tenant, so it joins both tenants that had jane.doe delivered,
    // and it is newer than the partner's.
    wait_for(
        "the manual result in the view",
        Duration::from_secs(10),
        || {
            let phones: Vec<(String, String)> = connection
                .prepare(
                    "SELECT tenant_id, phone_number FROM latest_results \
                 WHERE input_email = 'jane.doe@example.com' ORDER BY tenant_id",
                )
                .unwrap()
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            phones
                == vec![
                    ("acme".to_string(), "+14155552671".to_string()),
                    ("globex".to_string(), "+14155552671".to_string()),
                ]
        },
    );

    let pid = served.0.id().to_string();
    let interrupted = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(interrupted.success());
    let mut served = served;
    let status = served.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
