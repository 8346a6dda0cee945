"""SIGTERM stops every command at once, also while it connects to a server that
accepts TCP and never answers (DESIGN.md §6: the program within 300 ms).

Run: PGNOTIFY_BIN=build/app/pgnotify python3 -m unittest -v tests/app/test_signals.py
"""
import os
import signal
import socket
import subprocess
import time
import unittest

BIN = os.environ.get("PGNOTIFY_BIN", "build/app/pgnotify")
PATIENCE = 15  # seconds: a bound on waiting, never a synchronisation
# ASan and LeakSanitizer slow start and exit: the sanitizer build checks behaviour only.
LIMITS_CHECKED = os.environ.get("PGNOTIFY_SANITIZED") != "1"


class SilentServer:
    """Accepts TCP connections and never answers."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(PATIENCE)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        return self

    def uri(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def await_client(self):
        """Returns once the program's connect reached this server."""
        conn, _ = self.sock.accept()
        self.accepted.append(conn)

    def __exit__(self, *exc):
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class StopWhileConnectingTests(unittest.TestCase):
    def stop_while_connecting(self, *args):
        with SilentServer() as server:
            proc = subprocess.Popen([BIN, *args[:1], f"--uri={server.uri()}", *args[1:]],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                server.await_client()
                start = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=PATIENCE)
                elapsed_ms = (time.monotonic() - start) * 1000
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        print(f"\n  pgnotify {args[0]} exited {elapsed_ms:.1f} ms after SIGTERM while connecting")
        if LIMITS_CHECKED:
            self.assertLess(elapsed_ms, 300)
        return proc.returncode, out, err

    def test_listen_exits_0(self):
        code, _, err = self.stop_while_connecting("listen", "c")
        self.assertEqual(code, 0, err)

    def test_status_exits_1_and_says_connecting(self):
        code, out, err = self.stop_while_connecting("status", "c")
        self.assertEqual(code, 1, err)
        self.assertIn(b'"state":"connecting"', out)

    def test_notify_ends_with_the_signal(self):
        code, _, err = self.stop_while_connecting("notify", "c", "payload")
        self.assertEqual(code, -signal.SIGTERM, err)


if __name__ == "__main__":
    unittest.main()
