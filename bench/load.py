"""Benchmark: 50 experts annotating at once against gunicorn on PostgreSQL (issue 12, load bench).

Run from the project root: ``.venv/bin/python bench/load.py [--clients 50] [--duration 60] [--think 1.0]``
(``--duration 10 --clients 10`` for a quick look). Uses ``DATABASE_URL`` if set, else PostgreSQL at 127.0.0.1
(database ``bench_load``); Django's test machinery creates and drops a throw-away ``test_bench_load`` database,
and media, the secret key and the server's log live in a temporary var folder of their own, removed at the end.
gunicorn and the database are stopped and dropped at the end, also on Ctrl-C.

Data: one mammogram model with ``--clients + 2`` selected units, each with the same 64 top patches (real
phantom crops, as ``bench/web.py``), a hip dataset with ``--clients + 2`` images, and ``--clients`` expert
accounts. The server is real ``gunicorn config.wsgi`` (``--workers`` x ``--threads``, gthread, as
docker/compose.yaml runs it) with the production settings: DEBUG off, django-axes on (the bench only signs in
with the right password, through the real sign-in form) and the API throttle at its configured rate (3000/minute
per user unless ``API_THROTTLE_USER`` is set; a human's pace is far below it, and a 429 counts as an error).

Each client is a thread with its own session (signed in through ``/accounts/login/``, CSRF token on every
write, keep-alive HTTP/1.1 as a browser). A visit is what an expert does: open the survey page, read the unit
(``GET /api/units/<id>/``, which gives the version to save against), autosave the answers twice
(``PUT .../annotations/save/``), open the fracture page, read the image's labels and save a fracture label,
with an exponential think time (mean ``--think`` s) before every request: 1 s is several times a real
expert's pace (a survey page is looked at for many seconds before an answer); ``--think 0`` measures
capacity instead. Labels are per expert (each expert's own answer on a unit, own label on an image), so two
experts never conflict; a stale version comes from the same expert's second tab. So every ``--race-every``-th
save of an answer is sent from two tabs at once with the same version: exactly one must be accepted, the
other is refused with 409 (the correct answer), re-reads and retries. The 409s are counted, not errors.

1. Unloaded: one client, sequential, no think time (``--unloaded`` visits): p50 / p95 per request kind.
2. Loaded, two scenarios of ``--duration`` s each, all clients at once: each expert on their own unit and
   image, then all experts on the same unit and the same image. Requests/s, p50 / p95 per kind, errors
   (5xx, 429, connection errors and time-outs, unexpected statuses, a stale save accepted), 409s.
Lost saves: every client keeps, per label it saved, what each 2xx told it (version and values); at the end
each label is read back from the database: its version and values must be the last acknowledged ones, no
version may have been acknowledged twice, and the history must hold one change per version.

Also reported: the machine's 1-minute load average at the end of each phase (on a shared machine a load
above its core count means the server did not get the CPUs the ratio assumes) and the server's logged errors.

Targets: 0 errors, 0 lost saves, and in each scenario the p95 of each kind of save <= 10x its unloaded p95.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VAR = Path(tempfile.mkdtemp(prefix="bench-load-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_load")
os.environ["DEEPMINER_VAR_DIR"] = str(VAR)
os.environ.pop("MEDIA_ROOT", None)  # media under the throw-away var folder, for this process and the server

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402
from pages import free_port, wait_healthy  # noqa: E402  (bench/pages.py, beside this file)

from mining.sentences import DISPLACEMENTS, LOCATIONS  # noqa: E402

PASSWORD = "bench-load-password"
SAVE_KINDS = ("save annotation", "save fracture")
KINDS = ("survey page", "read unit", "save annotation", "fracture page", "read label", "save fracture")
TARGET_SAVE_P95_RATIO = 10.0
KEEP_ALIVE_S = 5  # gunicorn's --keep-alive; a tab idle for longer reconnects first, as a browser does
REQUEST_TIMEOUT_S = 60.0


# ------------------------------------------------------------------ data


@dataclass
class Data:
    experts: list[tuple[int, str]]  # (pk, username)
    units: list[int]  # one per expert, then the shared unit, then the unloaded client's
    images: list[int]  # the same for hip images
    hips: int


def build(n_experts: int) -> Data:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from annotator.models import Dataset, TopActivation
    from mining.phantoms import generate_hip_phantoms
    from tests.factories import DatasetFactory, ImageFactory, UnitFactory, mined_unit

    first = mined_unit(n_top=64, n_images=6)
    tops = list(TopActivation.objects.filter(unit=first))
    units = [first]
    for rank in range(2, n_experts + 3):
        unit = UnitFactory(
            model=first.model, selected_for="malignant", selection_rank=rank, threshold=first.threshold,
            max_activation=first.max_activation, suggested_concept=first.suggested_concept,
            suggested_iou=first.suggested_iou, mask_sprite=first.mask_sprite.name, heat_sprite=first.heat_sprite.name,
        )  # fmt: skip
        units.append(unit)
        TopActivation.objects.bulk_create(
            [
                TopActivation(
                    unit=unit, rank=t.rank, score=t.score, patch_id=t.patch_id, image_id=t.image_id, box=t.box
                )
                for t in tops
            ]
        )
    hips = DatasetFactory(name="Bench hips", kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    phantoms = generate_hip_phantoms(4, seed=12)
    images = [
        ImageFactory(dataset=hips, pixels=phantoms[i % 4].pixels, label=phantoms[i % 4].label, split="test")
        for i in range(n_experts + 2)
    ]
    hashed = make_password(PASSWORD)  # one hash for every account: creating 50 costs one PBKDF2
    users = User.objects.bulk_create(
        [User(username=f"load-expert-{i:02d}", password=hashed) for i in range(n_experts + 1)]
    )
    Group.objects.get(name="expert").user_set.add(*users)
    # Survey order: the last unit created is the unloaded client's; the first is the shared one.
    order = [*units[1 : n_experts + 1], units[0], units[-1]]
    image_order = [*images[:n_experts], images[n_experts], images[-1]]
    return Data(
        experts=[(u.pk, u.username) for u in users],
        units=[u.pk for u in order],
        images=[i.pk for i in image_order],
        hips=hips.pk,
    )


# ------------------------------------------------------------------ the clients


class Tab:
    """One browser tab: a keep-alive HTTP/1.1 connection, the session's cookies shared with other tabs.

    As a browser does, a request that fails on a reused connection before any answer (the server closed it
    while idle) is sent once more on a new one; ``retries`` counts them. Any other failure raises."""

    STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)

    def __init__(self, port: int, cookies: dict[str, str]) -> None:
        self.port = port
        self.cookies = cookies
        self.conn: http.client.HTTPConnection | None = None
        self.reused = False  # the connection has answered before
        self.last_used = 0.0
        self.started = 0.0
        self.retries = 0
        self.pending: tuple[str, str, bytes | None, dict[str, str]] = ("GET", "/", None, {})

    def start(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> None:
        if self.conn is not None and time.monotonic() - self.last_used > KEEP_ALIVE_S - 2:
            self.close()  # about to be closed by the server: do not race it
        headers = {"Accept": "application/json" if path.startswith("/api/") else "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if method not in ("GET", "HEAD"):
            headers["X-CSRFToken"] = self.cookies.get("csrftoken", "")
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        self.pending = (method, path, body, headers)
        self.started = time.perf_counter()
        try:
            self._send()
        except self.STALE:
            if not self.reused:
                raise
            self._resend()

    def _send(self) -> None:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
            self.reused = False
        method, path, body, headers = self.pending
        self.conn.request(method, path, body=body, headers=headers)

    def _resend(self) -> None:
        self.close()
        self.retries += 1
        self._send()

    def finish(self) -> tuple[int, bytes, float]:
        assert self.conn is not None
        try:
            response = self.conn.getresponse()
        except self.STALE:
            if not self.reused:
                raise
            self._resend()
            response = self.conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - self.started
        for header in response.msg.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            self.cookies.update({name: morsel.value for name, morsel in cookie.items()})
        self.last_used = time.monotonic()
        self.reused = True
        if response.will_close:
            self.close()
        return response.status, data, seconds

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


@dataclass
class Stats:
    samples: list[tuple[str, float]] = field(default_factory=list)  # (kind, seconds)
    errors: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    races: int = 0
    retries: int = 0  # requests sent again after the server closed an idle connection
    # (label kind, object pk) -> every acknowledged (version, values the client sent)
    acks: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = field(default_factory=lambda: defaultdict(list))


class Expert:
    """One signed-in expert: two tabs (the second only for the two-tab races), their own saves' bookkeeping."""

    def __init__(self, port: int, pk: int, username: str, seed: int, race_every: int) -> None:
        self.pk, self.username = pk, username
        self.race_every = race_every
        self.cookies: dict[str, str] = {}
        self.tabs = (Tab(port, self.cookies), Tab(port, self.cookies))
        self.random = random.Random(seed)
        self.stats = Stats()
        self.saves = 0
        self.think = 0.0
        self.stop = threading.Event()

    # --- requests

    def _pause(self) -> None:
        if self.think > 0:
            self.stop.wait(self.random.expovariate(1 / self.think))

    def request(self, kind: str, method: str, path: str, body: Any = None, tab: int = 0) -> tuple[int, Any]:
        """One request (after a think time), timed and checked; returns (status, parsed JSON or None).
        Status 0: the connection failed (an error already counted)."""
        self._pause()
        if self.stop.is_set():
            return -1, None  # the scenario ended during the think time: not sent
        self.send(kind, method, path, body, tab)
        return self.receive(kind, method, tab)

    def send(self, kind: str, method: str, path: str, body: Any, tab: int) -> None:
        try:
            self.tabs[tab].start(method, path, None if body is None else json.dumps(body).encode())
        except (OSError, http.client.HTTPException) as error:
            self.tabs[tab].close()
            self.stats.errors[f"{kind}: {type(error).__name__} sending"] += 1

    def receive(self, kind: str, method: str, tab: int) -> tuple[int, Any]:
        if self.tabs[tab].conn is None:
            return 0, None  # the send failed
        try:
            status, data, seconds = self.tabs[tab].finish()
        except (OSError, http.client.HTTPException) as error:
            self.tabs[tab].close()
            self.stats.errors[f"{kind}: {type(error).__name__}"] += 1
            return 0, None
        self.stats.samples.append((kind, seconds))
        self.stats.retries += self.tabs[tab].retries
        self.tabs[tab].retries = 0
        if status == 409 and method == "PUT":
            self.stats.conflicts += 1
        elif status != 200:
            self.stats.errors[f"{kind}: HTTP {status}"] += 1
        parsed = json.loads(data) if status in (200, 409) and kind not in ("survey page", "fracture page") else None
        return status, parsed

    def sign_in(self) -> None:
        tab = self.tabs[0]
        tab.start("GET", "/accounts/login/")
        status, _, _ = tab.finish()
        form = urllib.parse.urlencode(
            {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
        )
        tab.start("POST", "/accounts/login/", form.encode(), "application/x-www-form-urlencoded")
        status, body, _ = tab.finish()
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"{self.username} could not sign in: {status} {body[:200]!r}")

    # --- what an expert does

    def visit(self, unit: int, image: int, hips: int) -> None:
        self.request("survey page", "GET", f"/units/{unit}/")
        version = self.read_version("read unit", unit, image)
        for _ in range(2):  # two autosaves: the answer, then its notes
            self.saves += 1
            race = self.race_every > 0 and self.saves % self.race_every == 0
            version = self.save("save annotation", unit, version, race)
        self.request("fracture page", "GET", f"/datasets/{hips}/fractures/{image}/")
        version = self.read_version("read label", unit, image)
        self.save("save fracture", image, version, race=False)

    def read_version(self, kind: str, unit: int, image: int) -> int:
        path = f"/api/units/{unit}/" if kind == "read unit" else f"/api/images/{image}/fractures/"
        _, data = self.request(kind, "GET", path)
        mine = (data or {}).get("mine") or {}
        return int(mine.get("version", 0))

    def values(self, kind: str) -> dict[str, Any]:
        """A new answer (or label) each save, so a lost one shows in the values read back."""
        n = self.random.randrange(1_000_000)
        if kind == "save annotation":
            return {
                "recognizable": ("yes", "no", "unsure")[n % 3],
                "phenomena": [
                    {"description": "spiculated edge", "concept": "mass_margin.spiculated", "association": "malignant"}
                ],
                "confidence": 1 + n % 5,
                "notes": f"{self.username} answer {n}",
            }
        if n % 3 == 0:
            return {"fracture": False, "displacement": "", "comminuted": False, "impacted": False, "location": "",
                    "avulsed_fragment": False}  # fmt: skip
        return {
            "fracture": True,
            "displacement": DISPLACEMENTS[n % len(DISPLACEMENTS)],
            "comminuted": bool(n & 1),
            "impacted": bool(n & 2),
            "location": LOCATIONS[n % len(LOCATIONS)],
            "avulsed_fragment": bool(n & 4),
        }

    def _ack(self, kind: str, target: int, data: Any, values: dict[str, Any]) -> int:
        version = int(data["version"])
        self.stats.acks[(kind, target)].append((version, values))
        return version

    def save(self, kind: str, target: int, version: int, race: bool) -> int:
        """Save a new answer with `version`; returns the version the client now holds."""
        path = (
            f"/api/units/{target}/annotations/save/"
            if kind == "save annotation"
            else f"/api/images/{target}/fractures/save/"
        )
        values = self.values(kind)
        if not race:
            status, data = self.request(kind, "PUT", path, {"version": version, **values})
            if status == 200:
                return self._ack(kind, target, data, values)
            if status != 409:
                return version
        else:
            # Two tabs loaded the same version; both save at once. Exactly one may win.
            self._pause()
            if self.stop.is_set():
                return version
            other = self.values(kind)
            self.send(kind, "PUT", path, {"version": version, **values}, tab=0)
            self.send(kind, "PUT", path, {"version": version, **other}, tab=1)
            outcomes = [self.receive(kind, "PUT", tab=0), self.receive(kind, "PUT", tab=1)]
            self.stats.races += 1
            statuses = sorted(status for status, _ in outcomes)
            for (status, data), sent in zip(outcomes, (values, other), strict=True):
                if status == 200:
                    version = self._ack(kind, target, data, sent)
            if statuses == [200, 200]:
                self.stats.errors[f"{kind}: a stale save was accepted"] += 1
            if 409 not in statuses:
                return version
            if statuses == [409, 409]:
                self.stats.errors[f"{kind}: both tabs refused"] += 1
        # Refused as stale: re-read what the server holds and save again on top of it.
        version = self.read_version("read unit" if kind == "save annotation" else "read label", target, target)
        return self.save(kind, target, version, race=False)

    def run(self, targets: tuple[int, int], hips: int, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.visit(*targets, hips)


def scenario(experts: list[Expert], targets: list[tuple[int, int]], hips: int, seconds: float) -> float:
    """Every expert visits its targets until the deadline; returns the elapsed wall time."""
    started = time.monotonic()
    deadline = started + seconds
    for expert in experts:
        expert.stop.clear()
    timer = threading.Timer(seconds, lambda: [expert.stop.set() for expert in experts])  # ends think times
    timer.daemon = True
    timer.start()
    threads = []
    for expert, target in zip(experts, targets, strict=True):
        thread = threading.Thread(target=expert.run, args=(target, hips, deadline), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        for thread in threads:
            thread.join()
    finally:  # Ctrl-C: the clients stop too
        timer.cancel()
        for expert in experts:
            expert.stop.set()
    return time.monotonic() - started


# ------------------------------------------------------------------ the server


def database_url() -> str:
    """DATABASE_URL, naming the test database Django created."""
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(parts._replace(path="/" + str(connection.settings_dict["NAME"])))


def serve(workers: int, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEEPMINER_VAR_DIR": str(VAR),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log = (VAR / "gunicorn.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--keep-alive", str(KEEP_ALIVE_S), "--graceful-timeout", "10", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        wait_healthy(server, f"http://127.0.0.1:{port}", seconds=120)
    except RuntimeError:
        raise RuntimeError(f"gunicorn did not start: {(VAR / 'gunicorn.log').read_text()[-2000:]}") from None
    return server, port


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# ------------------------------------------------------------------ reading back


def lost_saves(stats: list[tuple[int, Stats]]) -> tuple[int, int, list[str]]:
    """(lost, unanswered, notes). Lost: labels whose stored version or values are not the last acknowledged
    ones, versions acknowledged twice, versions missing from the history. Unanswered: versions the server
    made that no 2xx told the client of (only this client writes its labels, each from version 0)."""
    from annotator.models import AnnotationChange, FractureDescriptor, UnitAnnotation

    lost, unanswered, notes = 0, 0, []
    for expert_pk, expert_stats in stats:
        for (kind, target), acks in expert_stats.acks.items():
            versions = [version for version, _ in acks]
            last_version, values = max(acks, key=lambda ack: ack[0])
            if kind == "save annotation":
                row = UnitAnnotation.objects.filter(unit_id=target, expert_id=expert_pk).first()
                change_kind = AnnotationChange.Target.UNIT_ANNOTATION
            else:
                row = FractureDescriptor.objects.filter(image_id=target, expert_id=expert_pk).first()
                change_kind = AnnotationChange.Target.FRACTURE_DESCRIPTOR
            stored = {} if row is None else {name: getattr(row, name) for name in values}
            if row is None or row.version != last_version or stored != values:
                lost += 1
                notes.append(f"{kind} {target} by {expert_pk}: acknowledged v{last_version} {values}, read {stored}")
            twice = len(versions) - len(set(versions))
            if twice:
                lost += twice
                notes.append(f"{kind} {target} by {expert_pk}: {twice} version(s) acknowledged twice")
            unanswered += len(set(range(1, last_version + 1)) - set(versions))
            if row is not None:
                history = AnnotationChange.objects.filter(target=change_kind, target_id=row.pk).count()
                if history != row.version:
                    lost += abs(row.version - history)
                    notes.append(f"{kind} {target} by {expert_pk}: version {row.version}, {history} history rows")
    return lost, unanswered, notes


# ------------------------------------------------------------------ report


def summarise(name: str, experts: list[Stats], seconds: float, lost: int) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    conflicts = races = retries = 0
    for stats in experts:
        for kind, elapsed in stats.samples:
            by_kind[kind].append(elapsed * 1000)
        errors.update(stats.errors)
        conflicts += stats.conflicts
        races += stats.races
        retries += stats.retries
    requests = sum(len(times) for times in by_kind.values())
    return {
        "scenario": name,
        "seconds": round(seconds, 1),
        "requests": requests,
        "requests_per_s": round(requests / seconds, 1),
        "kinds": {
            kind: {
                "n": len(by_kind[kind]),
                "p50_ms": round(float(np.percentile(by_kind[kind], 50)), 1),
                "p95_ms": round(float(np.percentile(by_kind[kind], 95)), 1),
            }
            for kind in KINDS
            if by_kind[kind]
        },
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(8)),
        "conflicts_409": conflicts,
        "races": races,
        "keep_alive_retries": retries,
        "lost_saves": lost,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'scenario':<12} {'request':<16} {'n':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for result in results:
        for kind, row in result["kinds"].items():
            print(f"{result['scenario']:<12} {kind:<16} {row['n']:>6} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}")
        print(
            f"{result['scenario']:<12} {'= total':<16} {result['requests']:>6}   {result['requests_per_s']:.1f} req/s "
            f"over {result['seconds']:.0f} s; errors {result['errors']}, 409 {result['conflicts_409']} "
            f"({result['races']} two-tab races), lost saves {result['lost_saves']}; "
            f"{result['keep_alive_retries']} sent again on a new connection, "
            f"{result['unanswered_saves']} saves applied without an answer; machine load {result['load_average_1min']}"
        )
        for what, count in result["error_kinds"].items():
            print(f"{'':<12}   error: {what} x{count}")


def measure(args: argparse.Namespace, data: Data, port: int) -> list[tuple[str, list[tuple[int, Stats]], float, float]]:
    """Sign everyone in, then the unloaded client, then the two loaded scenarios; for each (name, per-expert
    stats, seconds, the machine's 1-minute load average at its end)."""
    experts = [Expert(port, pk, name, seed=i, race_every=args.race_every) for i, (pk, name) in enumerate(data.experts)]
    solo, crowd = experts[-1], experts[: args.clients]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(experts)) as pool:  # at once, as a morning's sign-ins; a failure raises here
        list(pool.map(Expert.sign_in, experts))
    print(f"{len(experts)} sign-ins: {time.perf_counter() - started:.1f} s", flush=True)

    solo.race_every = 0
    solo.visit(data.units[-1], data.images[-1], data.hips)  # warm-up, not counted
    solo.stats = Stats(acks=solo.stats.acks)  # its saves still count for the read-back
    started = time.perf_counter()
    for _ in range(args.unloaded):
        solo.visit(data.units[-1], data.images[-1], data.hips)
    results = [("unloaded", [(solo.pk, solo.stats)], time.perf_counter() - started, os.getloadavg()[0])]
    plans = {
        "own units": [(data.units[i], data.images[i]) for i in range(args.clients)],
        "same unit": [(data.units[args.clients], data.images[args.clients])] * args.clients,
    }
    try:
        for name, targets in plans.items():
            for expert in crowd:
                expert.stats = Stats()
                expert.think = args.think
            print(f"{name}: {args.clients} experts for {args.duration:.0f} s ...", flush=True)
            seconds = scenario(crowd, targets, data.hips, args.duration)
            results.append((name, [(expert.pk, expert.stats) for expert in crowd], seconds, os.getloadavg()[0]))
    finally:  # idle keep-alive connections would hold gunicorn's graceful stop
        for expert in experts:
            for tab in expert.tabs:
                tab.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent experts")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per loaded scenario")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time before each request, s")
    parser.add_argument("--race-every", type=int, default=5, help="every n-th answer save races two tabs (0: none)")
    parser.add_argument("--unloaded", type=int, default=50, help="visits of the unloaded client")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (docker/compose.yaml: 3)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (compose: 4)")
    args = parser.parse_args()
    # Ctrl-C (even when started in the background, where SIGINT is ignored) and a kill run the clean-up below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    vendor = connection.vendor
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        data = build(args.clients)
        print(f"database: {vendor} ({connection.settings_dict['NAME']}), var {VAR}")
        print(f"data: {len(data.units)} units x 64 top patches, {len(data.images)} hip images, "
              f"{len(data.experts)} experts ({time.perf_counter() - started:.0f} s)")  # fmt: skip
        connection.close()  # the server's connections are the ones that count from here
        server, port = serve(args.workers, args.threads)
        try:
            print(f"gunicorn: {args.workers} workers x {args.threads} threads on port {port}", flush=True)
            results = measure(args, data, port)
        finally:
            stop_server(server)
            server_log = [  # gunicorn's and Django's errors (Django also logs each 409 as a warning)
                line
                for line in (VAR / "gunicorn.log").read_text(errors="replace").splitlines()
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback"))
            ]
        summaries, notes = [], []
        for name, stats, seconds, load in results:
            lost, unanswered, why = lost_saves(stats)
            notes.extend(why)
            summary = summarise(name, [s for _, s in stats], seconds, lost)
            summaries.append({**summary, "unanswered_saves": unanswered, "load_average_1min": round(load, 1)})
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(VAR, ignore_errors=True)
    print_table(summaries)
    if server_log:
        print(f"the server logged {len(server_log)} errors; the last ones:")
        print("\n".join(f"  {line}" for line in server_log[-15:]))
    for note in notes[:10]:
        print(f"  lost: {note}")

    unloaded = summaries[0]["kinds"]
    ratios = {
        f"{summary['scenario']}: {kind}": round(summary["kinds"][kind]["p95_ms"] / unloaded[kind]["p95_ms"], 2)
        for summary in summaries[1:]
        for kind in SAVE_KINDS
        if kind in summary["kinds"]
    }
    print("\np95 of saves under load / unloaded: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    errors = sum(s["errors"] for s in summaries)
    lost = sum(s["lost_saves"] for s in summaries)
    figures = {
        "database": vendor,
        "clients": args.clients,
        "duration_s": args.duration,
        "think_s": args.think,
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        **{s["scenario"].replace(" ", "_"): {k: v for k, v in s.items() if k != "scenario"} for s in summaries},
        "save_p95_ratios": ratios,
        "errors": errors,
        "lost_saves": lost,
        "server_errors_logged": len(server_log),
    }
    targets = {"errors": "== 0", "lost_saves": "== 0", "save_p95_ratio": f"<= {TARGET_SAVE_P95_RATIO:g}x unloaded"}
    met = (
        vendor == "postgresql"
        and errors == 0
        and lost == 0
        and len(ratios) == 2 * len(SAVE_KINDS)
        and max(ratios.values()) <= TARGET_SAVE_P95_RATIO
    )
    print(json.dumps({"bench": "load", "figures": figures, "targets": targets, "met": bool(met)}))


if __name__ == "__main__":
    main()
