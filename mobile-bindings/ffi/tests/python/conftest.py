"""What the stories share: the generated bindings, the accounts the harness made, a console
over plain HTTP and a phone driven through the FFI exactly as an app would drive it.

Run by `cargo test -p vigil-ffi --test python_stories`, which builds the library, generates
these bindings, starts the real server and passes its address and accounts in the environment.
"""

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.environ["VIGIL_FFI_DIR"])

import vigil_ffi  # noqa: E402  (generated into VIGIL_FFI_DIR)

STORIES = json.loads(os.environ["VIGIL_STORIES"])
URL = STORIES["url"]
PASSWORD = STORIES["password"]
# Long enough for a loaded machine; every wait ends as soon as what it waits for happened.
PATIENCE = 60.0


class Console:
    """An adviser's or operator's console: plain HTTP, as the browser speaks it."""

    def __init__(self, email):
        self.token = self._call("POST", "/auth/login", {"email": email, "password": PASSWORD})[
            "access_token"
        ]

    def _call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{URL}/api/v1{path}", data=data, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    async def post(self, path, body):
        return await asyncio.to_thread(self._call, "POST", path, body, self.token)

    async def get(self, path):
        return await asyncio.to_thread(self._call, "GET", path, None, self.token)


class MemorySecrets(vigil_ffi.SecretStore):
    """The app's Keychain/Keystore, in memory: the foreign trait the SDK keeps its token in."""

    def __init__(self):
        self.kept = {}

    def get(self, key):
        return self.kept.get(key)

    def set(self, key, value):
        if value is None:
            self.kept.pop(key, None)
        else:
            self.kept[key] = value


class Listener(vigil_ffi.EventListener):
    """Hands each event from the SDK's thread to the test's event loop."""

    def __init__(self, loop, queue):
        self.loop = loop
        self.queue = queue

    def on_event(self, event):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class Phone:
    """A staff member's phone: the generated bindings, an event queue, its own storage."""

    def __init__(self, client, directory, secrets):
        self.client = client
        self.directory = directory
        self.secrets = secrets
        self.events = asyncio.Queue()
        self.subscription = client.subscribe(Listener(asyncio.get_running_loop(), self.events))

    async def next_event(self, accept):
        """The next event for which `accept` answers something true; that answer."""
        deadline = time.monotonic() + PATIENCE
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the awaited event never came"
            event = await asyncio.wait_for(self.events.get(), timeout=left)
            got = accept(event)
            if got:
                return got

    async def next_message(self, kind):
        """The payload of the next stream message of `kind`."""

        def accept(event):
            if event.is_message() and event.message.kind == kind:
                return json.loads(event.message.payload_json)
            return None

        return await self.next_event(accept)

    async def drained(self):
        await eventually(
            "the outbox drained", lambda: self._is_empty()
        )

    async def _is_empty(self):
        p = await self.client.pending()
        return p.fixes == 0 and p.others == 0


async def eventually(what, check):
    """Awaits `check()` until it answers something true, for up to PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def accounts():
    return STORIES


@pytest.fixture
def adviser():
    return Console(STORIES["adviser"])


@pytest.fixture
def operator():
    return Console(STORIES["operator"])


@pytest.fixture
async def open_phone():
    """Opens a signed-in phone for a staff e-mail, with its own storage and secret store."""
    made = []

    async def make(email):
        directory = tempfile.TemporaryDirectory()
        secrets = MemorySecrets()
        client = await vigil_ffi.VigilClient.open(URL, directory.name, secrets)
        await client.login(email, PASSWORD)
        phone = Phone(client, directory, secrets)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.client.stop()
        phone.subscription.cancel()
        phone.directory.cleanup()
