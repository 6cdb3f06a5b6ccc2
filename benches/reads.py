#!/usr/bin/env python3
"""Read-path benchmark against a running strongroom: creates a secret, reveals it N times
sequentially, and reports latency percentiles, throughput and the key provider calls the
reads cost (from /metrics). Standard library only.

    python3 benches/reads.py --url http://127.0.0.1:8080 --token srt_... [--reads 500]

Run it against a release build for numbers worth comparing; the README's "Measured"
section says what was measured and how.
"""
import argparse
import json
import statistics
import time
import urllib.request
import uuid


def post(url, token, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql",
        data=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def provider_calls(url):
    with urllib.request.urlopen(f"{url}/metrics") as response:
        text = response.read().decode()
    calls = {}
    for line in text.splitlines():
        if line.startswith("strongroom_key_provider_calls_total{"):
            labels, value = line.rsplit(" ", 1)
            calls[labels.split("{", 1)[1].rstrip("}")] = int(float(value))
    return calls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()

    name = "BENCH_" + uuid.uuid4().hex[:12].upper()
    started = time.perf_counter()
    post(args.url, args.token,
         "mutation($i: CreateSecretInput!) { createSecret(input: $i) { secret { id } } }",
         {"i": {"name": name, "value": "bench-" + uuid.uuid4().hex}})
    create_ms = (time.perf_counter() - started) * 1000

    before = provider_calls(args.url)
    latencies = []
    for _ in range(args.reads):
        started = time.perf_counter()
        post(args.url, args.token,
             "query($n: String!) { secretValue(name: $n) { version } }", {"n": name})
        latencies.append((time.perf_counter() - started) * 1000)
    after = provider_calls(args.url)

    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    print(f"createSecret: {create_ms:.1f} ms")
    print(f"{args.reads} sequential secretValue reads: p50 {pct(50):.2f} ms, p95 {pct(95):.2f} ms, "
          f"max {latencies[-1]:.2f} ms, mean {statistics.mean(latencies):.2f} ms, "
          f"{args.reads / (sum(latencies) / 1000):.0f} reads/s")
    print(f"key provider calls during the reads: {spent or 'none'}")


if __name__ == "__main__":
    main()
