"""The benchmark's load generator reads each response exactly to its end."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.load import LOOPBACK, _one_request


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection-at-a-time server that sends queued responses in pieces and then
    keeps the connection open, as a server waiting for the client to close does."""
    listener = socket.create_server((LOOPBACK, 0))
    responses: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for piece in responses.pop(0).split(b"|"):
                    conn.sendall(piece)
                    time.sleep(0.05)
                while not stop.is_set() and conn.recv(1):  # until the client closes
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], responses
    stop.set()
    thread.join(timeout=2)
    listener.close()


def test_204_without_content_length_ends_at_its_headers(server: tuple[int, list[bytes]]) -> None:
    port, responses = server
    responses.append(b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n")
    # The server holds the connection until the client closes: waiting for EOF would time out.
    assert _one_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1.0) == 204


def test_body_is_read_to_its_content_length(server: tuple[int, list[bytes]]) -> None:
    port, responses = server
    responses.append(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234|56789")
    assert _one_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2.0) == 200


def test_incomplete_body_is_not_counted(server: tuple[int, list[bytes]]) -> None:
    port, responses = server
    responses.append(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    with pytest.raises(TimeoutError):
        _one_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.5)
