#!/usr/bin/env python3
"""Helpers for tests/bench/run.sh: request signing, start-up timing and oha report parsing.

Subcommands:
  sign SECRET BODY_FILE
      Print the three Standard Webhooks headers (webhook-id, webhook-timestamp,
      webhook-signature) for BODY_FILE signed now with the whsec_ SECRET, one "name: value"
      line each.
  first-200 --port PORT --body FILE [--secret S] [--runs N] [--timeout-secs T] -- CMD...
      Start CMD N times (default 5) and measure the time from the start of the process to the
      first 200 response to a POST of FILE to http://127.0.0.1:PORT/, signed with S when given.
      Each process is stopped with SIGTERM, by its PID, before the next run. Print one JSON
      object with every run, the median and the maximum, in milliseconds.
  oha-summary FILE [--expect-status CODE]
      Print requests per second, p50 and p99 latency in milliseconds, and the request count
      from one oha JSON report as one JSON object. Exit with status 1 when any response had
      another status than CODE (default 200) or when oha saw errors.
  summary RESULTS MACHINE
      Print the Markdown summary of a run: the JSON lines of RESULTS (written by run.sh) as
      tables, each figure next to its target, after the machine description in MACHINE.

Only the standard library is used, so the script runs on a fresh machine without a virtual
environment.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid

SECRET_PREFIX = "whsec_"


def signed_headers(secret, body, timestamp=None):
    """Return the Standard Webhooks headers for BODY (bytes) signed with the whsec_ SECRET."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("the secret must start with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX):])
    message_id = "msg_" + uuid.uuid4().hex
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }


def command_sign(args):
    with open(args.body_file, "rb") as body_file:
        body = body_file.read()
    for name, value in signed_headers(args.secret, body).items():
        print(f"{name}: {value}")


def post_once(port, body, headers, timeout_secs):
    """POST BODY to 127.0.0.1:PORT and return the status, or None when nothing listens yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_secs)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    finally:
        connection.close()


def stop_process(process):
    """Stop PROCESS with SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def time_to_first_200(command, port, body, secret, timeout_secs):
    """Start COMMAND and return the milliseconds until it first responds with 200."""
    headers = {"content-type": "application/json"}
    if secret:
        # Signed before the clock starts; the signature stays valid for minutes.
        headers.update(signed_headers(secret, body))

    started = time.perf_counter()
    # The logs on standard output are dropped, as run.sh does for the load runs.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = started + timeout_secs
        last_status = None
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with status {process.returncode}")
            last_status = post_once(port, body, headers, timeout_secs)
            if last_status == 200:
                return (time.perf_counter() - started) * 1000.0
            time.sleep(0.0002)
        raise RuntimeError(
            f"{command[0]} did not respond with 200 within {timeout_secs} s "
            f"(last status: {last_status})"
        )
    finally:
        stop_process(process)


def command_first_200(args):
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        sys.exit("first-200: no command given after --")
    with open(args.body, "rb") as body_file:
        body = body_file.read()

    runs = []
    for _ in range(args.runs):
        runs.append(time_to_first_200(command, args.port, body, args.secret, args.timeout_secs))
        # Lets the kernel release the port before the next start.
        time.sleep(0.2)
    print(
        json.dumps(
            {
                "runs_ms": [round(run, 2) for run in runs],
                "median_ms": round(statistics.median(runs), 2),
                "max_ms": round(max(runs), 2),
            }
        )
    )


def command_oha_summary(args):
    with open(args.file, encoding="utf-8") as report_file:
        report = json.load(report_file)
    summary = report["summary"]
    percentiles = report["latencyPercentiles"]
    statuses = report.get("statusCodeDistribution", {})
    errors = report.get("errorDistribution", {})
    requests = sum(statuses.values())
    result = {
        "requests": requests,
        "rps": round(summary["requestsPerSec"], 1),
        "p50_ms": round(percentiles["p50"] * 1000.0, 3),
        "p99_ms": round(percentiles["p99"] * 1000.0, 3),
        "statuses": statuses,
        "errors": errors,
    }
    print(json.dumps(result))
    unexpected = {code: count for code, count in statuses.items() if code != args.expect_status}
    if unexpected or errors or requests == 0:
        print(
            f"{args.file}: expected only status {args.expect_status}, got {statuses}, "
            f"errors {errors}",
            file=sys.stderr,
        )
        sys.exit(1)


# Targets of the benchmark, checked in the summary.
TARGET_CEILING_RATIO = 0.5
TARGET_FIXED_RATE_P99_MS = 5.0
TARGET_IDLE_RSS_BYTES = 20_000_000
TARGET_STARTUP_MS = 50.0
TARGET_PARSE_RSS_BYTES = 50_000_000
TARGET_PACING_MEAN_TOLERANCE = 0.01
TARGET_BATCHING_SPEEDUP = 5.0


# Receiver targets in the order of the summary, with their labels.
RECEIVER_TARGETS = {
    "memory": "(a) in-memory publisher",
    "memory-quiet": "(a) with RUST_LOG=warn",
    "memory-quiet-noauth": "(a) with RUST_LOG=warn, AUTH_MODE=none",
    "emulator": "(b) Pub/Sub emulator",
    "ceiling": "(c) bare axum",
}


def verdict(met):
    return "met" if met else "MISSED"


def megabytes(kib):
    return kib * 1024 / 1_000_000


def receiver_tables(results):
    loads = {}
    for result in results:
        if result["kind"] == "receiver-load":
            loads[(result["target"], result["concurrency"])] = result
    if not loads:
        return []
    lines = [
        "## Receiver",
        "",
        "| concurrency | target | requests/s | p50 ms | p99 ms | server CPU µs/request "
        "| emulator CPU µs/request | ratio to (c) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in sorted({key[1] for key in loads}):
        ceiling = loads.get(("ceiling", concurrency))
        for target in RECEIVER_TARGETS:
            result = loads.get((target, concurrency))
            if result is None:
                continue
            oha = result["oha"]
            ticks_per_sec = result["clock_ticks_per_sec"]
            cpu_us = result["server_cpu_ticks"] / ticks_per_sec * 1e6 / oha["requests"]
            emulator_cpu = ""
            if result.get("emulator_cpu_ticks"):
                emulator_us = result["emulator_cpu_ticks"] / ticks_per_sec * 1e6 / oha["requests"]
                emulator_cpu = f"{emulator_us:.1f}"
            ratio = ""
            if target.startswith("memory") and ceiling:
                value = oha["rps"] / ceiling["oha"]["rps"]
                ratio = f"{value:.2f}"
                if target == "memory":
                    ratio += f" ({verdict(value >= TARGET_CEILING_RATIO)})"
            lines.append(
                f"| {concurrency} | {RECEIVER_TARGETS[target]} | {oha['rps']:,.0f} "
                f"| {oha['p50_ms']:.3f} | {oha['p99_ms']:.3f} | {cpu_us:.1f} | {emulator_cpu} "
                f"| {ratio} |"
            )
    lines.append("")
    names = RECEIVER_TARGETS

    for result in results:
        if result["kind"] == "receiver-fixed-rate":
            oha = result["oha"]
            met = oha["p99_ms"] < TARGET_FIXED_RATE_P99_MS
            lines.append(
                f"Fixed rate {result['rate']} requests/s, in-memory publisher: achieved "
                f"{oha['rps']:,.0f}/s, p50 {oha['p50_ms']:.3f} ms, p99 {oha['p99_ms']:.3f} ms "
                f"(target under {TARGET_FIXED_RATE_P99_MS:g} ms: {verdict(met)})."
            )
            lines.append("")

    memory_rows = [result for result in results if result["kind"] == "rss"]
    if memory_rows:
        lines += [
            "| process | idle RSS MB | RSS after load MB | peak RSS MB | idle target |",
            "|---|---:|---:|---:|---|",
        ]
        for result in memory_rows:
            idle = megabytes(result["idle_kb"])
            met = result["idle_kb"] * 1024 < TARGET_IDLE_RSS_BYTES
            lines.append(
                f"| {names[result['target']]} | {idle:.1f} | "
                f"{megabytes(result['loaded_kb']):.1f} | {megabytes(result['peak_kb']):.1f} | "
                f"under 20 MB: {verdict(met)} |"
            )
        lines.append("")

    startups = [result for result in results if result["kind"] == "startup"]
    if startups:
        lines += [
            "| process | start to first 200, median ms | max ms | target |",
            "|---|---:|---:|---|",
        ]
        for result in startups:
            run = result["result"]
            met = run["max_ms"] < TARGET_STARTUP_MS
            lines.append(
                f"| {names[result['target']]} | {run['median_ms']:.1f} | {run['max_ms']:.1f} | "
                f"under {TARGET_STARTUP_MS:g} ms: {verdict(met)} |"
            )
        lines.append("")
    return lines


def sender_tables(results):
    lines = []
    parses = [result for result in results if result["kind"] == "parse"]
    if parses:
        lines += [
            "## Sender",
            "",
            "| file | lines | emails/s | peak RSS MB | target |",
            "|---|---:|---:|---:|---|",
        ]
        for result in parses:
            peak_bytes = result["peak_rss_mib"] * 1024 * 1024
            met = peak_bytes < TARGET_PARSE_RSS_BYTES
            lines.append(
                f"| {result['format']} | {result['lines']:,} | {result['emails_per_sec']:,.0f} | "
                f"{peak_bytes / 1_000_000:.1f} | under 50 MB: {verdict(met)} |"
            )
        lines.append("")
    for result in results:
        if result["kind"] != "pacing":
            continue
        run = result["result"]
        interval = result["target_interval_ms"]
        min_met = run["min_gap_ms"] >= interval
        mean_met = abs(run["mean_gap_ms"] - interval) <= interval * TARGET_PACING_MEAN_TOLERANCE
        lines += [
            f"Pacing, {run['requests']} requests with MIN_REQUEST_INTERVAL_MS="
            f"{run['interval_ms']}, against one per {interval:g} ms: minimum gap "
            f"{run['min_gap_ms']:.3f} ms (target at least {interval:g}: {verdict(min_met)}), "
            f"mean gap {run['mean_gap_ms']:.3f} ms (target within 1 %: {verdict(mean_met)}), "
            f"{run['gaps_below_interval']} of {run['requests'] - 1} gaps below "
            f"{run['interval_ms']} ms, maximum gap {run['max_gap_ms']:.3f} ms, arrival offsets "
            f"from the ideal schedule {run['schedule_offset_min_ms']:.3f} to "
            f"{run['schedule_offset_max_ms']:.3f} ms.",
            "",
        ]
    return lines


def sink_tables(results):
    records = {result["label"]: result for result in results if result["kind"] == "sink"}
    runs = {label: record["result"] for label, record in records.items()}
    if not runs:
        return []
    lines = [
        "## Sink",
        "",
        "| warehouse | BATCH_MAX_ROWS | BATCH_MAX_WAIT_MS | rows stored | rows/s | p50 ms "
        "| p99 ms | emulator CPU, cores | rows/s against one insert per message |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, run in runs.items():
        record = records[label]
        emulator_cores = ""
        if record.get("emulator_cpu_ticks"):
            busy_secs = record["emulator_cpu_ticks"] / record["clock_ticks_per_sec"]
            emulator_cores = f"{busy_secs / run['seconds']:.2f}"
        warehouse = label.split("-batch")[0]
        single = runs.get(f"{warehouse}-batch1")
        speedup = ""
        if single and single["rows_per_sec"] > 0 and run is not single:
            value = run["rows_per_sec"] / single["rows_per_sec"]
            speedup = f"{value:.2f} times"
            if label == f"{warehouse}-batch500":
                speedup += (
                    f" (target at least {TARGET_BATCHING_SPEEDUP:g}: "
                    f"{verdict(value >= TARGET_BATCHING_SPEEDUP)})"
                )
        lines.append(
            f"| {run['warehouse']} | {run['batch_max_rows']} | {run['batch_max_wait_ms']} "
            f"| {run['rows_in_table']:,} | {run['rows_per_sec']:,.0f} "
            f"| {run['latency_p50_ms']:.1f} | {run['latency_p99_ms']:.1f} | {emulator_cores} "
            f"| {speedup} |"
        )
    lines.append("")
    return lines


def command_summary(args):
    with open(args.results, encoding="utf-8") as results_file:
        results = [json.loads(line) for line in results_file if line.strip()]
    with open(args.machine, encoding="utf-8") as machine_file:
        machine = machine_file.read().strip().splitlines()

    lines = ["# Benchmark summary", ""]
    lines += [f"- {line}" for line in machine]
    lines.append("")
    lines += receiver_tables(results)
    lines += sender_tables(results)
    lines += sink_tables(results)
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="name", required=True)

    sign = commands.add_parser("sign", help="print signed Standard Webhooks headers")
    sign.add_argument("secret")
    sign.add_argument("body_file")
    sign.set_defaults(run=command_sign)

    first = commands.add_parser("first-200", help="time from process start to the first 200")
    first.add_argument("--port", type=int, required=True)
    first.add_argument("--body", required=True)
    first.add_argument("--secret")
    first.add_argument("--runs", type=int, default=5)
    first.add_argument("--timeout-secs", type=float, default=30.0)
    first.add_argument("command", nargs=argparse.REMAINDER)
    first.set_defaults(run=command_first_200)

    oha = commands.add_parser("oha-summary", help="summarise an oha JSON report")
    oha.add_argument("file")
    oha.add_argument("--expect-status", default="200")
    oha.set_defaults(run=command_oha_summary)

    summary = commands.add_parser("summary", help="print the Markdown summary of a run")
    summary.add_argument("results")
    summary.add_argument("machine")
    summary.set_defaults(run=command_summary)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
