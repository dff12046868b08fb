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
    /// Hex of the receiver's signing key (see [`crate::secrets::secret_key_hex`]).
    pub receiver_key_hex: &'a str,
    pub data_dir: &'a Path,
    pub input_bucket: &'a str,
    pub tenant: &'a str,
}

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
        "Send the receiver a signed partner callback (the key is this run's receiver secret):\n"
    );
    let _ = writeln!(
        text,
        "  KEY={}\n\
         \x20 BODY='{{\"input_email\":\"jane.doe@example.com\",\"name\":\"Jane Doe\",\"phone_number\":\"+1 555 010 0199\",\"company_domain\":\"example.com\"}}'\n\
         \x20 ID=msg_manual_$(date +%s%N); TS=$(date +%s)\n\
         \x20 SIG=$(printf '%s' \"$ID.$TS.$BODY\" | openssl dgst -sha256 -mac HMAC -macopt \"hexkey:$KEY\" -binary | openssl base64 -A)\n\
         \x20 curl -sS -i {} -H 'content-type: application/json' -H \"webhook-id: $ID\" \\\n\
         \x20   -H \"webhook-timestamp: $TS\" -H \"webhook-signature: v1,$SIG\" -d \"$BODY\"\n",
        info.receiver_key_hex, info.receiver_url,
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

    #[test]
    fn instructions_name_every_service() {
        let info = ServeInfo {
            receiver_url: "http://127.0.0.1:8081/",
            sender_url: "http://127.0.0.1:8082/",
            sink_url: "http://127.0.0.1:8083/",
            partner_url: "http://127.0.0.1:8084/",
            receiver_key_hex: "00ff",
            data_dir: Path::new(".local"),
            input_bucket: "input",
            tenant: "demo-tenant",
        };
        let text = serve_instructions(&info);
        for expected in [
            "  receiver  http://127.0.0.1:8081/",
            "  sender    http://127.0.0.1:8082/",
            "  sink      http://127.0.0.1:8083/",
            "  partner   http://127.0.0.1:8084/",
            "OBJ=incoming/demo-tenant/contacts.csv; FILE='.local/input'/$OBJ",
            "KEY=00ff",
            "sqlite3 -header -column '.local/warehouse.db' 'SELECT * FROM latest_results'",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    /// The signing snippet must produce the signature the standardwebhooks crate computes.
    #[test]
    fn signing_snippet_matches_the_crate() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let key_hex = crate::secrets::secret_key_hex(secret).unwrap();
        let body = r#"{"input_email":"jane.doe@example.com"}"#;
        let script = format!(
            "KEY={key_hex}; ID=msg_1; TS=1700000000; BODY='{body}'\n\
             printf '%s' \"$ID.$TS.$BODY\" | openssl dgst -sha256 -mac HMAC -macopt \"hexkey:$KEY\" \
             -binary | openssl base64 -A"
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");

        let expected = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign("msg_1", 1_700_000_000, body.as_bytes())
            .unwrap();
        assert_eq!(
            format!("v1,{}", String::from_utf8(output.stdout).unwrap().trim()),
            expected
        );
    }
}
