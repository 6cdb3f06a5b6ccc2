"""Runs benches/event_latency against real servers (see benches/events).

PostgreSQL: a fresh database, `strongroom bootstrap`, two `strongroom serve` replicas; the
client subscribes on one and writes through the other. SQLite: one server, both roles.
Reuses the process helpers of benches/load.py.
"""
import argparse
import atexit
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (the load benchmark's helpers)


def run_store(args, store: str) -> str:
    workdir = Path(tempfile.mkdtemp(prefix=f"strongroom-events-{store}-"))
    database = f"strongroom_events_{os.getpid()}"
    servers = []
    try:
        if store == "sqlite":
            listen = f"127.0.0.1:{load.free_port()}"
            env = load.server_env(f"sqlite://{workdir}/strongroom.db?mode=rwc", workdir, listen)
            process, out, _ = load.start_server(args.strongroom, env, workdir, f"http://{listen}")
            servers.append(process)
            token = [line for line in out.read_text().splitlines() if line.startswith("srt_")][0]
            writer = listener = f"http://{listen}"
        else:
            load.psql(args.postgres, f'CREATE DATABASE "{database}"')
            url = urllib.parse.urlsplit(args.postgres)._replace(path=f"/{database}").geturl()
            bootstrap = subprocess.run(
                [args.strongroom, "bootstrap", "--org", "bench"],
                env=load.server_env(url, workdir), cwd=workdir,
                capture_output=True, text=True, timeout=120, check=True,
            )
            token = bootstrap.stdout.strip().splitlines()[-1]
            bases = []
            for _ in range(2):
                listen = f"127.0.0.1:{load.free_port()}"
                env = load.server_env(url, workdir, listen)
                process, _, _ = load.start_server(
                    args.strongroom, env, workdir, f"http://{listen}")
                servers.append(process)
                bases.append(f"http://{listen}")
            writer, listener = bases
        env = dict(os.environ, STRONGROOM_BENCH_TOKEN=token)
        started = time.monotonic()
        result = subprocess.run(
            [args.client, "--writer", writer, "--listener", listener,
             "--updates", str(args.updates)],
            env=env, capture_output=True, text=True, timeout=1800,
        )
        if result.returncode != 0:
            raise SystemExit(f"event_latency failed:\n{result.stdout}\n{result.stderr}")
        where = "writer and subscriber on two replicas" if store == "postgres" else "one server"
        return (f"## {store} ({where}), {args.updates} sequential updates, "
                f"{time.monotonic() - started:.1f} s\n\n```\n{result.stdout.strip()}\n```\n")
    finally:
        for process in servers:
            load.stop(process)
        if store == "postgres":
            load.psql(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strongroom", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--postgres", default=os.environ.get(
        "STRONGROOM_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    atexit.register(load.kill_children)
    sections = [run_store(args, store) for store in args.stores.split(",")]
    report = "# Subscription events: commit to delivery\n\n" + "\n".join(sections)
    print(report)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"events-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(report)


if __name__ == "__main__":
    main()
