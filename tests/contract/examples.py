"""Run the code examples of the partner guide against locally started receivers.

Every fenced block in the guide whose info string carries a title, such as
```sh title="sign-and-send"```, is an example that this script runs or checks as written. A
titled block without a check here, or a check whose block is missing, fails the run, so no
example can be added or renamed without being tested.

Environment (set by tests/contract/run.sh):
  SIGNATURE_RECEIVER_URL  receiver started with AUTH_MODE=signature
  SIGNATURE_SECRET        the whsec_ secret that receiver accepts
  BEARER_RECEIVER_URL     receiver started with AUTH_MODE=bearer
  BEARER_TOKEN            the token that receiver accepts

Only the Python standard library is used. Exit status 0 means every example passed.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FENCE = re.compile(
    r"^```(?P<lang>[\w-]+)(?P<attrs>[^\n]*)\n(?P<code>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
TITLE = re.compile(r'title="(?P<title>[^"]+)"')

SUCCESS_MESSAGE = "Enrichment data received and processed"
# Time limit of one example, in seconds. The send-result example may wait for retries.
EXAMPLE_TIMEOUT_SECS = 120


class ExampleFailed(Exception):
    """An example did not behave as the guide describes."""


def read_examples(guide_path):
    """Return the guide's titled code blocks as {title: (language, code)}."""
    with open(guide_path, encoding="utf-8") as guide:
        text = guide.read()
    examples = {}
    for block in FENCE.finditer(text):
        title = TITLE.search(block["attrs"])
        if title is None:
            continue
        name = title["title"]
        if name in examples:
            raise ExampleFailed(f"two code blocks are titled {name!r}")
        examples[name] = (block["lang"], block["code"])
    return examples


def sign(secret, msg_id, timestamp, body):
    """Compute a Standard Webhooks v1 signature, independently of the guide's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def run_block(language, code, env, timeout=EXAMPLE_TIMEOUT_SECS):
    """Run one block with sh or Python and return the completed process."""
    if language == "sh":
        command = ["sh", "-c", code]
    elif language == "python":
        command = [sys.executable, "-c", code]
    else:
        raise ExampleFailed(f"no runner for {language} blocks")
    return subprocess.run(
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def expect(condition, message, process=None):
    if condition:
        return
    if process is not None:
        message += (
            f"\n  exit status: {process.returncode}"
            f"\n  stdout: {process.stdout.strip()}"
            f"\n  stderr: {process.stderr.strip()}"
        )
    raise ExampleFailed(message)


def expect_success_answer(process, input_email):
    """Check that a send example printed the receiver's 200 body as its last line."""
    expect(process.returncode == 0, "the example failed", process)
    lines = process.stdout.strip().splitlines()
    expect(lines, "the example printed nothing", process)
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ExampleFailed(f"the last line is not JSON: {lines[-1]!r}") from None
    expected_keys = ["status", "message", "input_email", "message_id"]
    expect(list(answer) == expected_keys, f"answer keys {list(answer)} != {expected_keys}")
    expect(answer["status"] == "success", f"status {answer['status']!r} != 'success'")
    expect(answer["message"] == SUCCESS_MESSAGE, f"message {answer['message']!r}")
    expect(
        answer["input_email"] == input_email,
        f"input_email {answer['input_email']!r} != {input_email!r}",
    )
    message_id = answer["message_id"]
    expect(isinstance(message_id, str) and message_id, f"message_id {message_id!r} is empty")
    return answer


def parse_http_request(text):
    """Split an HTTP/1.1 request into (headers, body), with lowercased header names."""
    head, _, body = text.partition("\n\n")
    lines = head.splitlines()
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body.rstrip("\n").encode()


def check_signed_request_example(examples, _env):
    secret = examples["example-secret"][1].strip()
    headers, body = parse_http_request(examples["signed-request-example"][1])
    expected = sign(secret, headers["webhook-id"], headers["webhook-timestamp"], body)
    expect(
        headers["webhook-signature"] == expected,
        f"the documented signature {headers['webhook-signature']} != computed {expected}",
    )
    request = json.loads(body)
    expect(list(request) == ["tenant_id", "input_email"], f"body keys {list(request)}")


def check_verify_signature(examples, _env):
    language, code = examples["verify-signature"]
    secret = examples["example-secret"][1].strip()
    _, body = parse_http_request(examples["signed-request-example"][1])
    msg_id = "msg_" + "0" * 64
    now = int(time.time())

    with tempfile.TemporaryDirectory() as directory:
        body_file = os.path.join(directory, "body.json")
        with open(body_file, "wb") as file:
            file.write(body)

        def verify(timestamp, signature, body_path=body_file):
            return run_block(
                language,
                code,
                {
                    "WEBHOOK_SECRET": secret,
                    "WEBHOOK_ID": msg_id,
                    "WEBHOOK_TIMESTAMP": str(timestamp),
                    "WEBHOOK_SIGNATURE": signature,
                    "BODY_FILE": body_path,
                },
            )

        good = sign(secret, msg_id, now, body)
        process = verify(now, good)
        expect(process.returncode == 0, "a valid signature was rejected", process)
        expect(process.stdout.strip() == "signature valid", "no 'signature valid'", process)

        process = verify(now, f"v1,AAAA v2,{good[3:]} {good}")
        expect(process.returncode == 0, "a valid signature among several was rejected", process)

        other_secret = "whsec_" + base64.b64encode(b"another secret of 24 byte").decode()
        process = verify(now, sign(other_secret, msg_id, now, body))
        expect(process.returncode == 1, "a signature with another secret passed", process)
        expect(process.stderr.strip() == "signature invalid", "no 'signature invalid'", process)

        tampered = os.path.join(directory, "tampered.json")
        with open(tampered, "wb") as file:
            file.write(body.replace(b"jane.doe", b"john.doe"))
        process = verify(now, good, tampered)
        expect(process.returncode == 1, "a signature over another body passed", process)

        stale = now - 301
        process = verify(stale, sign(secret, msg_id, stale, body))
        expect(process.returncode == 1, "a timestamp 301 s old passed", process)
        expect(
            process.stderr.strip() == "timestamp outside the 5-minute tolerance",
            "no tolerance message",
            process,
        )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url, body, headers):
    """POST and return (status, body bytes). An HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_receive_request(examples, _env):
    language, code = examples["receive-request"]
    expect(language == "python", f"receive-request is a {language} block")
    secret = examples["example-secret"][1].strip()
    headers, body = parse_http_request(examples["signed-request-example"][1])
    port = free_port()
    url = f"http://127.0.0.1:{port}/your/webhook"
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                expect(server.poll() is None, "the example server exited at start-up")
                expect(time.monotonic() < deadline, "the example server did not listen in 10 s")
                time.sleep(0.1)

        def send(timestamp, signature):
            return post(
                url,
                body,
                {
                    "Content-Type": "application/json",
                    "webhook-id": headers["webhook-id"],
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signature,
                },
            )

        now = int(time.time())
        status, _ = send(now, sign(secret, headers["webhook-id"], now, body))
        expect(status == 202, f"a signed request got {status}, expected 202")

        status, _ = send(now, "v1," + base64.b64encode(b"x" * 32).decode())
        expect(status == 401, f"a wrong signature got {status}, expected 401")

        stale = now - 301
        status, _ = send(stale, sign(secret, headers["webhook-id"], stale, body))
        expect(status == 401, f"a stale timestamp got {status}, expected 401")
    finally:
        server.terminate()
        stdout, stderr = server.communicate(timeout=10)

    expected_line = f"{headers['webhook-id']} tenant-12345 jane.doe@example.com"
    expect(
        stdout.splitlines() == [expected_line],
        f"the example server printed {stdout!r}, expected one line {expected_line!r}"
        f"\n  stderr: {stderr.strip()}",
    )


def check_sign_and_send(examples, env):
    language, code = examples["sign-and-send"]
    process = run_block(
        language,
        code,
        {"RECEIVER_URL": env["SIGNATURE_RECEIVER_URL"], "WEBHOOK_SECRET": env["SIGNATURE_SECRET"]},
    )
    answer = expect_success_answer(process, "jane.doe@example.com")

    documented = json.loads(examples["sign-and-send-response"][1])
    documented["message_id"] = answer["message_id"]
    expect(answer == documented, f"the answer {answer} differs from the guide's {documented}")


def check_send_with_bearer_token(examples, env):
    language, code = examples["send-with-bearer-token"]
    process = run_block(
        language,
        code,
        {"RECEIVER_URL": env["BEARER_RECEIVER_URL"], "BEARER_TOKEN": env["BEARER_TOKEN"]},
    )
    expect_success_answer(process, "jane.doe@example.com")


class FlakyProxy:
    """A local server that returns 503 to the first request and forwards later ones.

    It records the webhook-id of every request, so a check can tell that a retry kept it.
    """

    def __init__(self, target_url):
        self.webhook_ids = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.webhook_ids.append(self.headers.get("webhook-id"))
                if len(proxy.webhook_ids) == 1:
                    status, answer, headers = 503, b'{"status":"error"}', {"Retry-After": "1"}
                else:
                    forwarded = {
                        name: self.headers[name]
                        for name in ["Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature"]
                        if name in self.headers
                    }
                    status, answer = post(target_url, body, forwarded)
                    headers = {}
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()


def check_send_result(examples, env):
    language, code = examples["send-result"]
    secret = env["SIGNATURE_SECRET"]
    process = run_block(
        language, code, {"RECEIVER_URL": env["SIGNATURE_RECEIVER_URL"], "WEBHOOK_SECRET": secret}
    )
    expect_success_answer(process, "jane.doe@example.com")

    # The retry path: a 503 with Retry-After, then the receiver's response to the same delivery.
    with FlakyProxy(env["SIGNATURE_RECEIVER_URL"]) as proxy:
        process = run_block(language, code, {"RECEIVER_URL": proxy.url, "WEBHOOK_SECRET": secret})
    expect_success_answer(process, "jane.doe@example.com")
    ids = proxy.webhook_ids
    expect(len(ids) == 2, f"expected 2 attempts through the proxy, got {len(ids)}: {ids}")
    expect(ids[0] == ids[1] and ids[0], f"the retry changed the webhook-id: {ids}")


def check_result_example(examples, env):
    body = examples["result-example"][1].encode()
    status, answer = post(
        env["BEARER_RECEIVER_URL"],
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {env['BEARER_TOKEN']}"},
    )
    expect(status == 200, f"the example result got {status}: {answer!r}")
    expect(json.loads(answer)["input_email"] == "jane.doe@example.com", f"answer {answer!r}")


def check_invalid_result(examples, env):
    language, code = examples["invalid-result"]
    process = run_block(
        language,
        code,
        {"RECEIVER_URL": env["BEARER_RECEIVER_URL"], "BEARER_TOKEN": env["BEARER_TOKEN"]},
    )
    expect(process.returncode == 0, "the example failed", process)
    answer = json.loads(process.stdout)
    documented = json.loads(examples["invalid-result-response"][1])
    expect(
        answer == documented,
        "the receiver's answer differs from the guide's:\n"
        f"  receiver: {json.dumps(answer)}\n  guide:    {json.dumps(documented)}",
    )


# Each check names the titled blocks it covers.
CHECKS = [
    (check_signed_request_example, {"example-secret", "signed-request-example"}),
    (check_verify_signature, {"verify-signature"}),
    (check_receive_request, {"receive-request"}),
    (check_sign_and_send, {"sign-and-send", "sign-and-send-response"}),
    (check_send_with_bearer_token, {"send-with-bearer-token"}),
    (check_send_result, {"send-result"}),
    (check_result_example, {"result-example"}),
    (check_invalid_result, {"invalid-result", "invalid-result-response"}),
]

REQUIRED_ENV = ["SIGNATURE_RECEIVER_URL", "SIGNATURE_SECRET", "BEARER_RECEIVER_URL", "BEARER_TOKEN"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("guide", help="path of the partner guide (docs/partners.md)")
    args = parser.parse_args()

    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set; run tests/contract/run.sh")
    env = {name: os.environ[name] for name in REQUIRED_ENV}

    examples = read_examples(args.guide)
    covered = set().union(*(titles for _, titles in CHECKS))
    unchecked = sorted(set(examples) - covered)
    absent = sorted(covered - set(examples))
    if unchecked or absent:
        sys.exit(
            f"error: titled blocks without a check: {unchecked}; "
            f"checked blocks missing from {args.guide}: {absent}"
        )

    passed = failed = 0
    for check, titles in CHECKS:
        name = ", ".join(sorted(titles))
        try:
            check(examples, env)
        except (ExampleFailed, subprocess.TimeoutExpired, OSError, ValueError) as error:
            failed += 1
            print(f"FAIL {name}: {error}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
