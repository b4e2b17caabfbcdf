"""Study jobs that outlive a request and a restart: an embedded SQLite table under the data
directory, the upload spooled beside it, one runner thread. A job that was queued or running
when the service stopped comes back as `interrupted`; a failed job keeps its upload for a retry;
finished results are kept for the retention time, then removed with their upload and the job's
kept folder (options, DICOM results)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER, status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL, result TEXT, error TEXT
)"""


UPDATES = {
    "status": "UPDATE jobs SET status = ?, updated = ? WHERE id = ?",
    "done": "UPDATE jobs SET done = ?, updated = ? WHERE id = ?",
    "total": "UPDATE jobs SET total = ?, updated = ? WHERE id = ?",
    "result": "UPDATE jobs SET result = ?, updated = ? WHERE id = ?",
    "error": "UPDATE jobs SET error = ?, updated = ? WHERE id = ?",
}


class Cancelled(Exception):
    """Raised inside a running job whose cancellation was asked for."""


class JobStore:
    """The jobs table and the uploads folder of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.uploads = data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.kept = data_dir / "jobs"
        self.kept.mkdir(exist_ok=True)
        self._db = sqlite3.connect(data_dir / "jobs.sqlite3", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute(SCHEMA)

    def create(self, model: str, version: int | None) -> str:
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO jobs (id, model, version, status, created, updated) "
                "VALUES (?, ?, ?, 'queued', ?, ?)",
                (job_id, model, version, now, now),
            )
        return job_id

    def upload_dir(self, job_id: str) -> Path:
        return self.uploads / job_id

    def job_dir(self, job_id: str) -> Path:
        """What a job keeps past its run: its options and its DICOM results."""
        return self.kept / job_id

    def requeue(self, job_id: str) -> None:
        """Queue a finished job again (a retry), its error cleared."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE jobs SET status = 'queued', error = NULL, updated = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, model, version, status, done, total, created, updated, result, error "
                "FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        return None if row is None else _as_job(row)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set some of status, done, total, result and error (the last two as JSON)."""
        now = time.time()
        with self._lock, self._db:
            for name, value in fields.items():
                stored = json.dumps(value) if name in ("result", "error") else value
                self._db.execute(UPDATES[name], (stored, now, job_id))

    def status(self, job_id: str) -> str | None:
        job = self.get(job_id)
        return None if job is None else str(job["status"])

    def queued(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created"
            ).fetchall()
        return [row[0] for row in rows]

    def remove(self, job_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.upload_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def recover(self, retention_s: float) -> None:
        """At start: jobs cut off by a stop are `interrupted`; old finished ones go."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE jobs SET status = 'interrupted', error = ? WHERE status IN (?, ?)",
                (json.dumps("the service stopped while the job was queued or running"), *ACTIVE),
            )
        self.expire(retention_s)

    def expire(self, retention_s: float) -> None:
        cutoff = time.time() - retention_s
        with self._lock:
            old = self._db.execute(
                "SELECT id FROM jobs WHERE status NOT IN (?, ?) AND updated < ?",
                (*ACTIVE, cutoff),
            ).fetchall()
        for (job_id,) in old:
            self.remove(job_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _as_job(row: tuple[Any, ...]) -> dict[str, Any]:
    job_id, model, version, status, done, total, created, updated, result, error = row
    job: dict[str, Any] = {
        "id": job_id,
        "model": model,
        "version": version,
        "status": status,
        "progress": {"slices_done": done, "slices_total": total},
        "created": created,
        "updated": updated,
    }
    if result is not None:
        job["result"] = json.loads(result)
    if error is not None:
        job["error"] = json.loads(error)
    return job


Work = Callable[[str, Callable[[int, int], None]], dict[str, Any]]


class JobRunner:
    """One thread running queued jobs in order; `work(job_id, progress)` does a job."""

    def __init__(self, store: JobStore, work: Work) -> None:
        self._store = store
        self._work = work
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="study-jobs", daemon=True)
        self._thread.start()

    def submit(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for job_id in self._store.queued():
                if self._stop.is_set():
                    return
                self._run(job_id)
            self._wake.wait(timeout=1.0)
            self._wake.clear()

    def _run(self, job_id: str) -> None:
        store = self._store
        if store.status(job_id) != "queued":  # cancelled since it was listed
            return
        store.update(job_id, status="running")

        def progress(done: int, total: int) -> None:
            if store.status(job_id) == "cancelled" or self._stop.is_set():
                raise Cancelled
            store.update(job_id, done=done, total=total)

        try:
            result = self._work(job_id, progress)
        except Cancelled:
            if store.status(job_id) != "cancelled":  # stopped by shutdown: recover() marks it
                return
        except Exception as exc:  # every failure is the job's, reported, never lost
            store.update(job_id, status="failed", error=_failure(exc))
            return  # the upload stays for a retry (POST /v1/jobs/{id}/retry) until expiry
        else:
            store.update(job_id, status="done", result=result)
        shutil.rmtree(store.upload_dir(job_id), ignore_errors=True)


def _failure(exc: Exception) -> dict[str, Any]:
    from app.errors import ServiceError, problem

    if isinstance(exc, ServiceError):
        return problem(exc.status, exc.title, exc.detail, exc.slug)
    detail = f"the study could not be classified ({type(exc).__name__})"
    return problem(500, "Study failed", detail, "study-failed")
