"""End-to-end tests of the `pgnotify` program against the real PostgreSQL that
scripts/test.sh starts. Python parses the program's JSON independently of the
C++ escaper, so a payload that survives the round trip was escaped correctly.

Run: PGNOTIFY_BIN=build/app/pgnotify python3 -m unittest -v tests/app/test_cli.py
"""
import array
import fcntl
import json
import os
import select
import signal
import subprocess
import tempfile
import termios
import time
import unittest

BIN = os.environ.get("PGNOTIFY_BIN", "build/app/pgnotify")
PATIENCE = 15  # seconds: a bound on waiting, never a synchronisation
# Set by CMake for a build with -DPGNOTIFY_SANITIZE=ON: ASan's speed and memory
# say nothing about the program's, so only behaviour (the counts) is checked there.
SANITIZED = os.environ.get("PGNOTIFY_SANITIZED") == "1"


def server_uri():
    uri = os.environ.get("PGNOTIFY_TEST_URI")
    if not uri:
        raise RuntimeError("PGNOTIFY_TEST_URI is not set: run the tests with scripts/test.sh")
    return uri


def psql(sql, **variables):
    """Runs SQL with psql; variables are passed with -v and quoted by psql (:'name')."""
    args = ["psql", server_uri(), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    # From stdin: psql interpolates variables there, not in -c.
    subprocess.run(args, input=sql.encode(), check=True, capture_output=True)


class Listener:
    """A running `pgnotify listen`, read line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([BIN, "listen", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buffer = b""

    def line(self, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError("no line from pgnotify listen in time")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError("pgnotify listen closed stdout: "
                                     + self.proc.stderr.read().decode(errors="replace"))
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def unread_bytes(self):
        """What the program has written to stdout that nobody has read yet."""
        available = array.array("i", [0])
        fcntl.ioctl(self.proc.stdout.fileno(), termios.FIONREAD, available)
        return available[0]

    def wait_for_stderr(self, text, timeout=PATIENCE):
        seen = b""
        deadline = time.monotonic() + timeout
        while text.encode() not in seen:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"{text!r} never appeared on stderr: {seen!r}")
            seen += os.read(self.proc.stderr.fileno(), 65536)
        return seen

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=PATIENCE)
        return self.proc.returncode, self.buffer + out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def wait_until(probe, done=bool):
    """Polls `probe` until `done(result)`: for states of another process that no
    event announces. Fails after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; last: {result!r}")
        time.sleep(0.02)


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, timeout=60)


class ListenTests(unittest.TestCase):
    def test_payloads_arrive_as_exact_json(self):
        payloads = ["", "plain", 'quotes " and \' and \\ backslash', "line\nbreak\r\ttab",
                    "control \x01\x02\x1f\x7f", "ünïcødé ✓ 😀 \u2028",
                    '{"json": [1, 2.5, null], "s": "\\"esc\\""}', "x" * 7999]
        with Listener(f"--uri={server_uri()}", "e2e") as listener:
            self.assertEqual(listener.line(), {"event": "reconnected", "generation": 1})
            for payload in payloads:
                psql("SELECT pg_notify('e2e', :'p')", p=payload)
            for payload in payloads:
                event = listener.line()
                self.assertEqual(event["event"], "notification")
                self.assertEqual(event["channel"], "e2e")
                self.assertEqual(event["payload"].encode("utf-8", "surrogateescape"),
                                 payload.encode("utf-8"))
                self.assertEqual(event["generation"], 1)
                self.assertGreater(event["pid"], 0)
                self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            code, _, _ = listener.stop()
            self.assertEqual(code, 0)

    def test_hostile_channel_names_and_the_notify_command(self):
        channel = 'Weird "Name"; DROP TABLE t; --'
        with Listener(f"--uri={server_uri()}", "--", channel) as listener:
            listener.line()
            sent = run("notify", f"--uri={server_uri()}", channel, "from pgnotify notify")
            self.assertEqual(sent.returncode, 0, sent.stderr)
            event = listener.line()
            self.assertEqual(event["channel"], channel)
            self.assertEqual(event["payload"], "from pgnotify notify")
            self.assertEqual(listener.stop()[0], 0)

    def test_sigterm_exits_0_with_complete_lines(self):
        with Listener(f"--uri={server_uri()}", "flood") as listener:
            listener.line()
            psql("SELECT pg_notify('flood', g::text) FROM generate_series(1, 20000) g")
            first = listener.line()  # the flood has started arriving
            # Reading nothing more until the exit, the test's pipe fills (64 KiB,
            # some 600 lines): the program holds unwritten lines at SIGTERM,
            # which it must write out whole before it exits.
            wait_until(lambda: listener.unread_bytes(), lambda n: n >= 32768)
            code, rest, err = listener.stop()
        self.assertEqual(code, 0, err)
        self.assertGreater(len(rest.splitlines()), 200, "nothing was left to write at SIGTERM")
        self.assertTrue(rest.endswith(b"\n"), "last line incomplete")
        # Every line is whole, and the stream is exact: each gap in the numbers
        # is announced by a lagged event with exactly that many missed.
        expected = int(first["payload"]) + 1
        for line in rest.splitlines():
            event = json.loads(line)
            if event["event"] == "lagged":
                self.assertEqual(event["channel"], "flood")
                expected += event["missed"]
                continue
            self.assertEqual(event["event"], "notification")
            self.assertEqual(int(event["payload"]), expected)
            expected += 1

    def test_stops_within_200_ms_during_a_30_s_backoff(self):
        with Listener("--uri=postgresql://postgres@127.0.0.1:1/postgres", "--backoff-initial=30s",
                      "c") as listener:
            listener.wait_for_stderr("reconnecting in 30000 ms")
            start = time.monotonic()
            code, _, _ = listener.stop()
            elapsed_ms = (time.monotonic() - start) * 1000
        print(f"\n  pgnotify listen stopped {elapsed_ms:.1f} ms after SIGTERM during a 30 s backoff")
        self.assertEqual(code, 0)
        self.assertLess(elapsed_ms, 200)

    def test_gives_up_with_exit_3_when_asked_to(self):
        result = run("listen", "--uri=postgresql://postgres@127.0.0.1:1/postgres",
                     "--max-retries=2", "--backoff-initial=10ms", "c")
        self.assertEqual(result.returncode, 3)
        self.assertIn(b"giving up after 2 failed attempt(s)", result.stderr)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class Tally:
    """Events of one channel whose payloads are the numbers 1, 2, 3, ... (maybe
    padded on the left with dots): checks that every notification comes in order and
    that each gap is exactly a preceding lagged event's count."""

    def __init__(self, test, channel):
        self.test, self.channel = test, channel
        self.delivered = self.missed = self.lagged_lines = 0
        self.expected = 1

    def add(self, raw_line):
        event = json.loads(raw_line)
        if event["event"] == "lagged":
            self.test.assertEqual(event["channel"], self.channel)
            self.missed += event["missed"]
            self.lagged_lines += 1
            self.expected += event["missed"]
            return
        self.test.assertEqual(event["event"], "notification", event)
        self.test.assertEqual(event["channel"], self.channel)
        self.test.assertEqual(int(event["payload"].lstrip(".")), self.expected, "out of order")
        self.expected += 1
        self.delivered += 1

    def total(self):
        return self.delivered + self.missed


class BurstTests(unittest.TestCase):
    """The program keeps up with bursts: one write per batch and a default bound
    meant for stdout, so only a stalled stdout loses notifications (and says so)."""

    def test_a_burst_of_100000_reaches_a_file_whole_at_default_settings(self):
        count = 100_000
        with tempfile.TemporaryDirectory() as tmp:
            out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            with open(out_path, "wb") as out, open(err_path, "wb") as err, \
                    open(out_path, "rb") as follower:
                proc = subprocess.Popen([BIN, "listen", f"--uri={server_uri()}", "burst"],
                                        stdout=out, stderr=err)
                try:
                    # A file announces nothing: poll what has been appended so far.
                    pending = b""

                    def new_lines():
                        nonlocal pending
                        pending += follower.read()
                        *complete, pending = pending.split(b"\n")
                        return complete

                    first = wait_until(new_lines)
                    self.assertEqual(json.loads(first[0]), {"event": "reconnected", "generation": 1})
                    tally = Tally(self, "burst")
                    for line in first[1:]:
                        tally.add(line)
                    start = time.monotonic()
                    psql("SELECT pg_notify('burst', g::text) FROM generate_series(1, 100000) g")
                    deadline = start + 25
                    while tally.total() < count:
                        lines = new_lines()
                        if not lines:
                            if time.monotonic() > deadline or proc.poll() is not None:
                                with open(err_path, "rb") as log:
                                    self.fail(f"{tally.delivered} printed and {tally.missed} "
                                              f"missed of {count}; stderr: {log.read()!r}")
                            time.sleep(0.01)
                        for line in lines:
                            tally.add(line)
                    elapsed = time.monotonic() - start
                    proc.send_signal(signal.SIGTERM)
                    self.assertEqual(proc.wait(timeout=PATIENCE), 0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                for line in new_lines():  # nothing may follow: the count is exact
                    tally.add(line)
                self.assertEqual(pending, b"", "last line incomplete")
        print(f"\n  {count} notifications of one transaction: {tally.delivered} printed, "
              f"{tally.missed} missed, {elapsed:.2f} s from the NOTIFY to the last line")
        self.assertEqual(tally.total(), count)
        if SANITIZED:
            return  # whether a sanitized build keeps up is no statement about the program
        self.assertEqual(tally.lagged_lines, 0, f"{tally.missed} reported missed")
        self.assertEqual(tally.delivered, count)

    def test_b_a_stalled_reader_costs_bounded_memory_and_exact_counts(self):
        count = 300_000
        # 256-byte payloads: the program's default bound of them fits well in
        # 64 MiB, all 300,000 (that an unbounded program would hold) do not.
        pad = "lpad(g::text, 256, '.')"
        with Listener(f"--uri={server_uri()}", "--stats-interval=50ms", "stall") as listener:
            self.assertEqual(listener.line(), {"event": "reconnected", "generation": 1})
            # From here on the test does not read stdout: the pipe fills and the
            # program's write blocks, as with a stalled consumer.
            base = peak = vm_rss_kib(listener.proc.pid)
            psql(f"SELECT pg_notify('stall', {pad}) FROM generate_series(1, {count}) g")
            # The program has read everything once its stats say so (stderr stays drained).
            errors = b""
            received = 0
            deadline = time.monotonic() + 25
            while received < count:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([listener.proc.stderr], [], [], max(left, 0))
                peak = max(peak, vm_rss_kib(listener.proc.pid))
                if not ready:
                    raise AssertionError(f"the program received {received} of {count} in time")
                chunk = os.read(listener.proc.stderr.fileno(), 65536)
                if not chunk:
                    raise AssertionError("pgnotify listen closed stderr: " + errors.decode())
                errors += chunk
                *complete, errors = errors.split(b"\n")
                for line in complete:
                    if line.startswith(b'{"event":"stats"'):
                        received = json.loads(line)["received"]
            self.assertEqual(received, count)
            growth_mib = (peak - base) / 1024

            # The reader resumes: what was held comes out, then exactly what was missed.
            tally = Tally(self, "stall")
            deadline = time.monotonic() + 25
            streams = [listener.proc.stdout, listener.proc.stderr]
            while tally.total() < count:
                left = deadline - time.monotonic()
                ready, _, _ = select.select(streams, [], [], max(left, 0))
                if not ready:
                    raise AssertionError(f"{tally.delivered} delivered and {tally.missed} "
                                         f"missed of {count} in time")
                if listener.proc.stderr in ready:
                    os.read(listener.proc.stderr.fileno(), 65536)
                if listener.proc.stdout in ready:
                    chunk = os.read(listener.proc.stdout.fileno(), 1 << 20)
                    if not chunk:
                        raise AssertionError("pgnotify listen closed stdout")
                    listener.buffer += chunk
                    *complete, listener.buffer = listener.buffer.split(b"\n")
                    for line in complete:
                        tally.add(line)
            code, rest, _ = listener.stop()
            self.assertEqual(code, 0)
            for line in rest.splitlines():  # nothing may follow: the count is exact
                tally.add(line)
        print(f"\n  stalled reader, {count} notifications: RSS grew {growth_mib:.1f} MiB; "
              f"{tally.delivered} delivered, {tally.missed} missed "
              f"in {tally.lagged_lines} lagged line(s)")
        self.assertEqual(tally.total(), count)
        self.assertGreater(tally.missed, 0, "a stalled reader missed nothing: no bound")
        if SANITIZED:
            return  # ASan's own memory (shadow, quarantine) is not the program's
        self.assertLessEqual(growth_mib, 64)


class RemoteTests(unittest.TestCase):
    """Two processes on loopback: `serve` owns the connection, `listen --remote` subscribes."""

    def test_remote_subscriber_gets_everything_keeps_its_bound_and_is_forgotten(self):
        app_name = f"pgnotify-serve-e2e-{os.getpid()}"
        serve = Listener.__new__(Listener)  # same line reading, other command
        # --dynamic-channels: the remote subscriber's channel is LISTENed on demand.
        serve.proc = subprocess.Popen([BIN, "serve", f"--uri={server_uri()}&application_name={app_name}",
                                       "--port=0", "--dynamic-channels"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        serve.buffer = b""
        with serve:
            port = serve.line()["port"]
            remote = f"--remote=127.0.0.1:{port}"
            with Listener(remote, "--bound=10", "net") as client:
                self.assertEqual(client.line(), {"event": "reconnected", "generation": 1})
                psql("SELECT pg_notify('net', 'first')")
                self.assertEqual(client.line()["payload"], "first")

                # The serving process's backend dies: the remote side hears generation 2.
                psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = :'app'", app=app_name)
                self.assertEqual(client.line(), {"event": "reconnected", "generation": 2})
                psql("SELECT pg_notify('net', 'after the reconnect')")
                event = client.line()
                self.assertEqual((event["payload"], event["generation"]), ("after the reconnect", 2))

                # A frozen remote subscriber: the bound holds across the network.
                def server_counts():
                    return json.loads(run("status", remote).stdout)
                received_before = server_counts()["received"]
                client.proc.send_signal(signal.SIGSTOP)
                try:
                    psql("SELECT pg_notify('net', g::text) FROM generate_series(1, 1000) g")
                    counts = wait_until(server_counts,
                                        lambda c: c["received"] == received_before + 1000)
                finally:
                    client.proc.send_signal(signal.SIGCONT)
                # It had room for at most 10 (less if an ack was still unsent when it
                # froze); it gets those in order, then exactly how many it missed.
                payloads = []
                event = client.line()
                while event["event"] == "notification":
                    payloads.append(event["payload"])
                    event = client.line()
                self.assertLessEqual(len(payloads), 10)
                self.assertEqual(payloads, [str(i) for i in range(1, len(payloads) + 1)])
                self.assertEqual(event, {"event": "lagged", "channel": "net",
                                         "missed": 1000 - len(payloads)})
                self.assertEqual(counts["missed"], 1000 - len(payloads))
                psql("SELECT pg_notify('net', 'and on')")
                self.assertEqual(client.line()["payload"], "and on")

                # The remote process dies: the registry forgets it.
                client.proc.kill()
                client.proc.communicate()
                status = wait_until(lambda: json.loads(run("status", remote).stdout),
                                    lambda s: s["subscriptions"] == 0)
                self.assertEqual(status["channels"], [])  # its dynamic channel is gone too
            code, _, _ = serve.stop()
            self.assertEqual(code, 0)


class SecretsTests(unittest.TestCase):
    def test_wrong_password_is_reported_but_never_printed(self):
        port = os.environ["PGNOTIFY_PG_PORT"]
        uri = f"postgresql://pgnotify_pw:wrong-secret-4711@127.0.0.1:{port}/postgres"
        result = run("listen", f"--uri={uri}", "--max-retries=2", "--backoff-initial=10ms", "c")
        self.assertEqual(result.returncode, 3)
        self.assertIn(b"password authentication failed", result.stderr)
        self.assertNotIn(b"wrong-secret-4711", result.stderr + result.stdout)
        status = run("status", f"--uri={uri}", "c")
        self.assertEqual(status.returncode, 1)
        self.assertIn("password authentication failed", json.loads(status.stdout)["last_error"])
        self.assertNotIn(b"wrong-secret-4711", status.stderr + status.stdout)

    def test_password_is_never_printed_when_the_server_is_unreachable(self):
        uri = "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres"
        result = run("listen", f"--uri={uri}", "--max-retries=1", "c")
        self.assertEqual(result.returncode, 3)
        self.assertIn(b"Connection refused", result.stderr)
        self.assertNotIn(b"hunter2-secret", result.stderr + result.stdout)

    def test_right_password_connects(self):
        port = os.environ["PGNOTIFY_PG_PORT"]
        uri = f"postgresql://pgnotify_pw:the-right-password@127.0.0.1:{port}/postgres"
        status = run("status", f"--uri={uri}", "c")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertEqual(json.loads(status.stdout)["state"], "listening")
        self.assertNotIn(b"the-right-password", status.stderr + status.stdout)


class UsageTests(unittest.TestCase):
    def test_unknown_option_exits_2_naming_it(self):
        result = run("listen", "--frobnicate=1", "c")
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"unknown option --frobnicate", result.stderr)

    def test_bad_option_value_exits_2_naming_it(self):
        result = run("listen", "--backoff-initial=soon", "c")
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"bad value for --backoff-initial: 'soon'", result.stderr)

    def test_bad_config_value_exits_2_naming_the_key(self):
        path = f"/tmp/pgnotify-test-{os.getpid()}.ini"
        with open(path, "w") as f:
            f.write('[pgnotify]\nhealth-interval = "often"\n')
        try:
            result = run("listen", f"--config={path}", "c")
        finally:
            os.remove(path)
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"bad value for health-interval", result.stderr)

    def test_invalid_channel_exits_2(self):
        result = run("listen", f"--uri={server_uri()}", "x" * 64)
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"at most 63 are allowed", result.stderr)

    def test_the_shipped_config_file_is_valid_and_channels_are_listed(self):
        result = run("channels", "--config=config/pgnotify.ini", "b", "A b", "b")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.decode().splitlines(), ["A b", "b"])

    def test_help_for_each_command(self):
        for command in ["listen", "notify", "channels", "status", "serve"]:
            result = run(command, "--help")
            self.assertEqual(result.returncode, 0)
            self.assertIn(f"usage: pgnotify {command}".encode(), result.stdout)
            self.assertIn(b"example", result.stdout)


if __name__ == "__main__":
    unittest.main()
