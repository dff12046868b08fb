//! The text `--serve` prints: where each service listens and shell commands to try them.

use std::fmt::Write as _;
use std::path::Path;

use crate::event::OBJECT_FINALIZED;

/// Facts about a running stack that the instructions print.
#[derive(Debug, Clone)]
pub struct ServeInfo<'a> {
    pub receiver_url: &'a str,
    pub sender_url: &'a str,
    pub sink_url: &'a str,
    pub partner_url: &'a str,
    /// The receiver's Standard Webhooks secret, `whsec_` and the key in base64.
    pub receiver_secret: &'a str,
    /// Hex of the receiver's signing key (see [`crate::secrets::secret_key_hex`]).
    pub receiver_key_hex: &'a str,
    pub data_dir: &'a Path,
    pub input_bucket: &'a str,
    pub tenant: &'a str,
}

/// The signed-callback commands between the `SECRET=` line and the curl line. The README shows
/// the same commands, so change both together. They derive the hex HMAC key from `SECRET` and
/// sign `ID.TS.BODY` as Standard Webhooks prescribes.
const CALLBACK_RECIPE: &str = r#"BODY='{"input_email":"jane.doe@example.com","name":"Jane Doe","phone_number":"+1 (415) 555-2671"}'
ID=msg_$(date +%s%N)
TS=$(date +%s)
KEY=$(printf '%s' "${SECRET#whsec_}" | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')
SIG=$(printf '%s.%s.%s' "$ID" "$TS" "$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | openssl base64 -A)"#;

/// Quotes `text` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Builds the `--serve` banner with ready-to-paste commands. The commands use bash, curl,
/// openssl and GNU `stat`.
pub fn serve_instructions(info: &ServeInfo<'_>) -> String {
    let data_dir = info.data_dir.display().to_string();
    let object = format!("incoming/{}/contacts.csv", info.tenant);
    let bucket_dir = format!("{data_dir}/{}", info.input_bucket);
    let mut text = String::new();

    let _ = writeln!(text, "Local stack listening on 127.0.0.1 (Ctrl-C to stop):");
    let _ = writeln!(
        text,
        "  receiver  {}  partner callbacks, Standard Webhooks signatures",
        info.receiver_url
    );
    let _ = writeln!(
        text,
        "  sender    {}  storage events (CloudEvents), POST /deliver",
        info.sender_url
    );
    let _ = writeln!(
        text,
        "  sink      {}  Pub/Sub push envelopes",
        info.sink_url
    );
    let _ = writeln!(
        text,
        "  partner   {}  the simulated partner's webhook",
        info.partner_url
    );
    let _ = writeln!(
        text,
        "Data folder: {data_dir} (buckets as subfolders, warehouse.db, local-stack.log)\n"
    );

    let _ = writeln!(
        text,
        "Upload a file to the input bucket and send its storage event to the sender (run from \
         the repository root):\n"
    );
    let _ = writeln!(
        text,
        "  OBJ={object}; FILE={}/$OBJ\n\
         \x20 mkdir -p \"$(dirname \"$FILE\")\" && cp deploy/local-stack/sample/contacts.csv \"$FILE\"\n\
         \x20 GEN=$(stat -c %.9Y \"$FILE\" | tr -d .); SIZE=$(stat -c %s \"$FILE\")\n\
         \x20 curl -sS -i {} -H 'content-type: application/json' -H 'ce-specversion: 1.0' \\\n\
         \x20   -H \"ce-id: $GEN\" -H 'ce-type: {OBJECT_FINALIZED}' \\\n\
         \x20   -H 'ce-source: //storage.googleapis.com/projects/_/buckets/{}' \\\n\
         \x20   -H \"ce-subject: objects/$OBJ\" -H \"ce-time: $(date -u +%Y-%m-%dT%H:%M:%SZ)\" \\\n\
         \x20   -d \"{{\\\"bucket\\\":\\\"{}\\\",\\\"name\\\":\\\"$OBJ\\\",\\\"generation\\\":\\\"$GEN\\\",\\\"size\\\":\\\"$SIZE\\\",\\\"contentType\\\":\\\"text/csv\\\"}}\"\n",
        shell_quote(&bucket_dir),
        info.sender_url,
        info.input_bucket,
        info.input_bucket,
    );

    let _ = writeln!(
        text,
        "Send the receiver a signed partner callback. SECRET is this start's receiver secret \
         (a new one at every start), whose HMAC-SHA256 key in hex is {}:\n",
        info.receiver_key_hex
    );
    let _ = writeln!(text, "  SECRET={}", info.receiver_secret);
    for line in CALLBACK_RECIPE.lines() {
        let _ = writeln!(text, "  {line}");
    }
    let _ = writeln!(
        text,
        "  curl -i {} -H 'Content-Type: application/json' -H \"webhook-id: $ID\" \
         -H \"webhook-timestamp: $TS\" -H \"webhook-signature: v1,$SIG\" -d \"$BODY\"\n",
        info.receiver_url
    );

    let _ = writeln!(text, "Query the results:\n");
    let _ = writeln!(
        text,
        "  sqlite3 -header -column {} 'SELECT * FROM latest_results'",
        shell_quote(&format!("{data_dir}/warehouse.db"))
    );
    text
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn shell_quote_cases() {
        assert_eq!(shell_quote(".local"), "'.local'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn sample_info() -> ServeInfo<'static> {
        ServeInfo {
            receiver_url: "http://127.0.0.1:8081/",
            sender_url: "http://127.0.0.1:8082/",
            sink_url: "http://127.0.0.1:8083/",
            partner_url: "http://127.0.0.1:8084/",
            receiver_secret: SECRET,
            receiver_key_hex: "0b6155b0140886bb1c0a195020c57e6f9b1262ca686fba03",
            data_dir: Path::new(".local"),
            input_bucket: "input",
            tenant: "demo-tenant",
        }
    }

    #[test]
    fn instructions_name_every_service() {
        let text = serve_instructions(&sample_info());
        for expected in [
            "  receiver  http://127.0.0.1:8081/",
            "  sender    http://127.0.0.1:8082/",
            "  sink      http://127.0.0.1:8083/",
            "  partner   http://127.0.0.1:8084/",
            "OBJ=incoming/demo-tenant/contacts.csv; FILE='.local/input'/$OBJ",
            "whose HMAC-SHA256 key in hex is 0b6155b0140886bb1c0a195020c57e6f9b1262ca686fba03:",
            "sqlite3 -header -column '.local/warehouse.db' 'SELECT * FROM latest_results'",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    /// The callback block is the README's recipe with this start's secret and receiver URL.
    #[test]
    fn callback_block_is_the_readme_recipe() {
        let text = serve_instructions(&sample_info());
        let expected = r#"
  SECRET=whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD
  BODY='{"input_email":"jane.doe@example.com","name":"Jane Doe","phone_number":"+1 (415) 555-2671"}'
  ID=msg_$(date +%s%N)
  TS=$(date +%s)
  KEY=$(printf '%s' "${SECRET#whsec_}" | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')
  SIG=$(printf '%s.%s.%s' "$ID" "$TS" "$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | openssl base64 -A)
  curl -i http://127.0.0.1:8081/ -H 'Content-Type: application/json' -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" -d "$BODY"

"#;
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }

    /// The README's signed-callback example must be the printed commands, so that a reader can
    /// paste either.
    #[test]
    fn readme_shows_the_same_recipe() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .unwrap();
        let example: Vec<&str> = readme
            .lines()
            .skip_while(|line| !line.starts_with("SECRET=whsec_"))
            .skip(1)
            .take_while(|line| !line.starts_with("```"))
            .collect();
        let printed = serve_instructions(&sample_info());
        let printed: Vec<&str> = printed
            .lines()
            .skip_while(|line| !line.starts_with("  SECRET="))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(str::trim_start)
            .collect();
        assert_eq!(example, printed);
    }

    #[test]
    fn key_hex_matches_the_secret() {
        assert_eq!(
            crate::secrets::secret_key_hex(SECRET).as_deref(),
            Some(sample_info().receiver_key_hex)
        );
    }

    /// The printed KEY and SIG lines must produce the signature the standardwebhooks crate
    /// computes for the same secret, id, timestamp and body.
    #[test]
    fn signing_lines_match_the_crate() {
        let text = serve_instructions(&sample_info());
        let signing: Vec<&str> = text
            .lines()
            .map(str::trim_start)
            .filter(|line| line.starts_with("KEY=") || line.starts_with("SIG="))
            .collect();
        assert_eq!(signing.len(), 2, "{text}");
        let body = r#"{"input_email":"jane.doe@example.com"}"#;
        let script = format!(
            "SECRET={SECRET}; ID=msg_1; TS=1700000000; BODY='{body}'\n{}\nprintf '%s' \"$SIG\"",
            signing.join("\n")
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");

        let expected = standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .sign("msg_1", 1_700_000_000, body.as_bytes())
            .unwrap();
        assert_eq!(
            format!("v1,{}", String::from_utf8(output.stdout).unwrap()),
            expected
        );
    }
}
