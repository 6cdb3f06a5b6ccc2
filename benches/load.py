#!/usr/bin/env python3
"""Load benchmark for strongroom: throughput and latency under concurrent clients, on SQLite
and PostgreSQL, next to a floor measured in the same run.

Run it with the one command `benches/load` (it installs wrk if missing and builds the release
binaries first); its options are this script's:

    benches/load [--duration 10] [--stores sqlite,postgres] [--workloads typename,...]
                 [--connections 32] [--threads 2] [--keep]

What it measures, per store (SQLite in a fresh temporary directory; PostgreSQL in a fresh
database `strongroom_bench_<pid>` at 127.0.0.1:5432, dropped at the end):

- the floor: a bare async-graphql + axum server (`benches/floor.rs`) answering
  `{ __typename }`, measured at the start of each store's run, so each ratio compares
  numbers from the same run, a minute or two apart, on the same machine;
- strongroom's workloads, all with the admin token:
    typename           `{ __typename }` (authentication and the request pipeline)
    page50             `secrets(first: 50) { nodes { name currentVersion updatedAt } }`
    page50_dependents  the same page with `dependents { state resource { name } }`
    secretValue        an audited reveal, cycling over the 200 seeded secrets
    createSecret       a new secret per request (a unique name each time)

Each workload runs `wrk -t2 -c32 -dSECS --latency` (threads and connections are options)
after a discarded 2-second warm-up, and
reports requests/s, p50 and p99 latency, the fraction of the floor's requests/s, the SQL
statements and key provider (KMS) calls per request (deltas of `strongroom_db_statements_total`
and `strongroom_key_provider_calls_total` on `GET /metrics`, over wrk's request count),
non-2xx answers and answers carrying GraphQL `errors`. Before the load, one request of each
workload is sent on its own and must answer without `errors` (else the run stops there): a
benchmark of errors is worthless. Errors under load are reported, and make the exit status 1.
The floor runs with the same wrk script shape (the same `response` callback counting errors),
so the client costs the same on both sides of a ratio. Per-request counts can exceed a whole
number by a little: statements of the requests still in flight when wrk stops are counted,
those requests are not.

The seed: 200 secrets (`BENCH_SECRET_000` ... `_199`), 100 pipelines each referencing 4 of
them (every secret is referenced by 2 pipelines), the even-numbered half deployed, so each
secret has one `UP_TO_DATE` and one `NOT_DEPLOYED` dependent. `createSecret` runs last, as
it grows the table.

It prints one markdown table and writes it, with the raw wrk outputs, to
`target/bench/load-<timestamp>.md`. Python 3.11 standard library and wrk only. This is not
part of the test suite: `cargo test` and `.ci/run` never run it. A full default run (both
stores, 10 s per workload) takes about 3 minutes after the build.
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
UPSERT_RESOURCE = (
    "mutation($i: UpsertResourceInput!) { upsertResource(input: $i) { resource { id } } }"
)
DEPLOY_RESOURCE = (
    "mutation($id: ID!) { deployResource(input: { id: $id }) { deployment { id state } } }"
)

# In the order they run: createSecret last, since it adds thousands of secrets.
WORKLOADS = ["typename", "page50", "page50_dependents", "secretValue", "createSecret"]
STORES = ["sqlite", "postgres"]

# Every child process still running; killed on any exit.
CHILDREN: list[subprocess.Popen] = []


def seed_secret_name(i: int) -> str:
    return f"BENCH_SECRET_{i % SEED_SECRETS:03d}"


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


# Shared by every script: counts the answers that carry GraphQL `errors` (HTTP 200 or not)
# per thread, and prints the total from `done`, which runs in wrk's main Lua state.
LUA_COMMON = """
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
graphql_errors = 0
function response(status, headers, body)
  if string.find(body, '"errors"', 1, true) then
    graphql_errors = graphql_errors + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("graphql_errors")
  end
  io.write(string.format("GraphQL errors: %d\\n", total))
end
"""


def lua_script(token: str | None, body: str | None = None, dynamic: str | None = None) -> str:
    """A wrk script POSTing JSON: a fixed `body`, or a `request()` function (`dynamic`)."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if token:
        lines.append(f'wrk.headers["Authorization"] = {lua_string("Bearer " + token)}')
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    lines.append(LUA_COMMON)
    if dynamic:
        lines.append(dynamic)
    return "\n".join(lines) + "\n"


def body_lua(template: dict, expression: str) -> str:
    """A wrk script whose `request()` sends `template` (JSON holding one "\\0") with a Lua
    `expression` spliced in for the "\\0": a fresh body per request. `n` counts this
    thread's requests; `id` is the thread's number."""
    head, tail = json.dumps(template).split("\\u0000")
    return f"""
local head = {lua_string(head)}
local tail = {lua_string(tail)}
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, head .. {expression} .. tail)
end
"""


def secret_value_lua() -> tuple[str, str]:
    """`secretValue` over the seeded names: each thread starts elsewhere, then steps by 1."""
    template = {"query": SECRET_VALUE, "variables": {"n": "\0"}}
    script = body_lua(
        template, f'string.format("BENCH_SECRET_%03d", (id * 97 + n) % {SEED_SECRETS})')
    check = json.dumps({"query": SECRET_VALUE, "variables": {"n": seed_secret_name(0)}})
    return script, check


def create_secret_lua(tag: str) -> tuple[str, str]:
    """`createSecret` with a name unique per run (`tag`), thread and request."""
    template = {"query": CREATE_SECRET, "variables": {"i": {"name": "\0", "value": "v-load"}}}
    script = body_lua(template, f'"LOAD_{tag}_T" .. id .. "_" .. n')
    template["variables"]["i"]["name"] = f"LOAD_{tag}_CHECK"
    return script, json.dumps(template)


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
    graphql_errors: int


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
    errors = re.search(r"^GraphQL errors: (\d+)", output, re.MULTILINE)
    return WrkResult(
        output=output,
        rps=float(need(r"^Requests/sec:\s*([\d.]+)").group(1)),
        p50_ms=latency(50),
        p99_ms=latency(99),
        requests=int(need(r"^\s*(\d+) requests in ").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        graphql_errors=int(errors.group(1)) if errors else 0,
    )


def run_wrk(args, url: str, script: str, seconds: int, workdir: Path) -> WrkResult:
    path = workdir / "wrk.lua"
    path.write_text(script)
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "-s", str(path), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout + done.stderr)


# ---------------------------------------------------------------------------------------
# HTTP helpers (urllib for checks, keep-alive http.client for the seed)


def http_get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def post_once(base: str, token: str | None, body: str) -> dict:
    """One POST /graphql with urllib; fails loudly on a non-2xx answer or any `errors`."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}/graphql", data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"HTTP {e.code} for {body}: {e.read().decode(errors='replace')}")
    if answer.get("errors"):
        raise SystemExit(f"GraphQL errors for {body}:\n{json.dumps(answer['errors'], indent=2)}")
    return answer["data"]


class Client:
    """Keep-alive GraphQL client, one connection per thread."""

    def __init__(self, base: str, token: str):
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port, self.token = parsed.hostname, parsed.port, token
        self.local = threading.local()

    def post(self, query: str, variables: dict) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.token}"}
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.local.connection = connection
            try:
                connection.request("POST", "/graphql", body=body, headers=headers)
                response = connection.getresponse()
                status, payload = response.status, response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self.local.connection = None
                if attempt:
                    raise
        if status // 100 != 2:
            raise SystemExit(f"HTTP {status} while seeding: {payload[:500]!r}")
        answer = json.loads(payload)
        if answer.get("errors"):
            raise SystemExit(f"GraphQL errors while seeding: {answer['errors']}")
        return answer["data"]


def seed(base: str, token: str) -> float:
    """200 secrets, 100 pipelines x 4 references, the even-numbered pipelines deployed."""
    started = time.monotonic()
    client = Client(base, token)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:

        def create(i: int) -> None:
            variables = {"i": {
                "name": seed_secret_name(i),
                "value": "seed-" + random_tokens.token_hex(16),
                "description": f"load benchmark seed {i}",
            }}
            client.post(CREATE_SECRET, variables)

        def pipeline(p: int) -> None:
            references = [
                {"secretName": seed_secret_name(p * REFERENCES_PER_PIPELINE + k),
                 "field": f"sinks.s{k}.key"}
                for k in range(REFERENCES_PER_PIPELINE)
            ]
            variables = {"i": {"kind": "PIPELINE", "name": f"bench-pipeline-{p:03d}",
                               "references": references}}
            resource = client.post(UPSERT_RESOURCE, variables)["upsertResource"]["resource"]
            if p % 2 == 0:
                client.post(DEPLOY_RESOURCE, {"id": resource["id"]})

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
    for child in CHILDREN:
        stop(child)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process in CHILDREN:
        CHILDREN.remove(process)


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


def psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_url, "-c", sql],
                   check=True, capture_output=True, text=True)


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class Row:
    store: str
    workload: str
    result: WrkResult
    floor_rps: float
    statements_per_request: float | None = None
    provider_calls_per_request: float | None = None


@dataclass
class StoreRun:
    store: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def measure_floor(args, workdir: Path, store: str) -> Row:
    process, base = start_floor(args.floor, workdir)
    try:
        body = json.dumps({"query": TYPENAME})
        post_once(base, None, body)
        url = f"{base}/graphql"
        script = lua_script(None, body=body)
        run_wrk(args, url, script, WARMUP_SECONDS, workdir)
        result = run_wrk(args, url, script, args.duration, workdir)
    finally:
        stop(process)
    return Row(store, "floor", result, result.rps)


def workload_script(name: str, token: str, tag: str) -> tuple[str, str]:
    """(wrk script, one request body to check first)."""
    fixed = {"typename": TYPENAME, "page50": PAGE50, "page50_dependents": PAGE50_DEPENDENTS}
    if name in fixed:
        body = json.dumps({"query": fixed[name]})
        return lua_script(token, body=body), body
    if name == "secretValue":
        dynamic, check = secret_value_lua()
    elif name == "createSecret":
        dynamic, check = create_secret_lua(tag)
    else:
        raise SystemExit(f"unknown workload {name!r}")
    return lua_script(token, dynamic=dynamic), check


def run_store(args, store: str) -> StoreRun:
    run = StoreRun(store)
    workdir = Path(tempfile.mkdtemp(prefix=f"strongroom-load-{store}-"))
    admin_url = args.postgres
    database = f"strongroom_bench_{os.getpid()}"
    created_database = False
    server = None
    try:
        print(f"[{store}] floor ...", flush=True)
        floor = measure_floor(args, workdir, store)
        run.rows.append(floor)

        listen = f"127.0.0.1:{free_port()}"
        base = f"http://{listen}"
        if store == "sqlite":
            env = server_env(f"sqlite://{workdir}/strongroom.db?mode=rwc", workdir, listen)
            server, out, _ = start_server(args.strongroom, env, workdir, base)
            tokens = [line for line in out.read_text().splitlines() if line.startswith("srt_")]
            if len(tokens) != 1:
                raise SystemExit(f"expected one admin token on stdout, got:\n{out.read_text()}")
            token = tokens[0]
        else:
            psql(admin_url, f'CREATE DATABASE "{database}"')
            created_database = True
            url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{database}").geturl()
            env = server_env(url, workdir, listen)
            bootstrap = subprocess.run(
                [args.strongroom, "bootstrap", "--org", "bench"], env=env, cwd=workdir,
                capture_output=True, text=True, timeout=120,
            )
            if bootstrap.returncode != 0:
                raise SystemExit(f"strongroom bootstrap failed:\n{bootstrap.stderr}")
            token = bootstrap.stdout.strip().splitlines()[-1]
            server, _, _ = start_server(args.strongroom, env, workdir, base)
        if not token.startswith("srt_"):
            raise SystemExit(f"unexpected admin token line {token[:8]!r}...")

        print(f"[{store}] seeding ...", flush=True)
        seconds = seed(base, token)
        run.notes.append(f"seed ({SEED_SECRETS} secrets, {SEED_PIPELINES} pipelines, "
                         f"{SEED_PIPELINES // 2} deployed): {seconds:.1f} s")
        if store == "postgres":
            # A database in service has planner statistics (autovacuum gathers them within
            # a minute of a bulk load); measure that, not the first minute after the seed.
            url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{database}").geturl()
            psql(url, "ANALYZE")
            run.notes.append("ANALYZE after the seed (as autovacuum would)")

        url = f"{base}/graphql"
        for name in [w for w in WORKLOADS if w in args.workloads]:
            print(f"[{store}] {name} ...", flush=True)
            tag = random_tokens.token_hex(4).upper()
            script, check = workload_script(name, token, "W" + tag)
            post_once(base, token, check)
            run_wrk(args, url, script, WARMUP_SECONDS, workdir)
            script, _ = workload_script(name, token, "M" + tag)
            before = metrics(base)
            result = run_wrk(args, url, script, args.duration, workdir)
            after = metrics(base)
            requests = max(result.requests, 1)
            run.rows.append(Row(
                store, name, result, floor.result.rps,
                statements_per_request=(after[0] - before[0]) / requests,
                provider_calls_per_request=(after[1] - before[1]) / requests,
            ))
        stop(server)
        server = None
    finally:
        if server is not None:
            stop(server)
        if args.keep:
            print(f"[{store}] kept {workdir}" +
                  (f" and database {database}" if created_database else ""), flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if created_database:
                try:
                    psql(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                except subprocess.CalledProcessError as e:
                    print(f"[{store}] could not drop {database}: {e.stderr}", file=sys.stderr)
    return run


def table(runs: list[StoreRun]) -> str:
    header = ["store", "workload", "rps", "p50 ms", "p99 ms", "fraction of floor",
              "SQL stmts/req", "KMS calls/req", "non-2xx", "GraphQL errors"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for run in runs:
        for row in run.rows:
            r = row.result
            per = lambda value: "—" if value is None else f"{value:.2f}"
            cells = [
                run.store, row.workload, f"{r.rps:.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                f"{r.rps / row.floor_rps:.2f}" if row.floor_rps else "—",
                per(row.statements_per_request), per(row.provider_calls_per_request),
                str(r.non_2xx), str(r.graphql_errors),
            ]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--stores", type=comma_list(STORES), default=STORES,
                        help="comma list of sqlite,postgres (default both)")
    parser.add_argument("--workloads", type=comma_list(WORKLOADS), default=WORKLOADS,
                        help=f"comma list of {','.join(WORKLOADS)} (default all)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directories and the PostgreSQL database")
    parser.add_argument("--postgres", default=os.environ.get(
        "STRONGROOM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to create the benchmark database on (an admin URL)")
    parser.add_argument("--strongroom", default=str(REPO / "target/release/strongroom"))
    parser.add_argument("--floor", default=str(REPO / "target/release/examples/floor"))
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
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: run benches/load, which installs it")

    atexit.register(kill_children)
    # SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop servers and drop databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = [run_store(args, store) for store in STORES if store in args.stores]
    elapsed = time.monotonic() - started

    summary = table(runs)
    settings = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
                f"(after a {WARMUP_SECONDS} s warm-up each); {os.cpu_count()} CPUs; "
                f"revision {git_revision()}; {elapsed:.0f} s in all"
                + "".join(f"; {k}={v}" for k, v in EXTRA_SETTINGS.items()))
    print()
    print(summary)
    print()
    print(settings)
    for run in runs:
        for note in run.notes:
            print(f"{run.store}: {note}")
    failures = []
    for run in runs:
        for row in run.rows:
            r = row.result
            counts = {"non-2xx answers": r.non_2xx, "answers with GraphQL errors":
                      r.graphql_errors, "socket errors (wrk)": r.socket_errors}
            failures += [f"{run.store} {row.workload}: {n} {what}"
                         for what, n in counts.items() if n]
    for failure in failures:
        print(f"warning: {failure}")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"load-{stamp}.md"
    parts = [f"# strongroom load benchmark, {stamp}", "", settings, "", summary, ""]
    for run in runs:
        parts += [f"- {run.store}: {note}" for note in run.notes]
    parts.append("")
    for run in runs:
        for row in run.rows:
            parts += [f"## {run.store} / {row.workload}", "", "```", row.result.output.rstrip(),
                      "```", ""]
    report.write_text("\n".join(parts))
    print(f"report: {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
