"""What the ECS agent serves a task, on 127.0.0.1: metadata and role credentials.

A Fargate task finds its own ARN at ``$ECS_CONTAINER_METADATA_URI_V4/task``
and its task-role credentials at the container credentials endpoint. The
emulated task runner gives each worker process the same two things,
through the same environment variables (``ECS_CONTAINER_METADATA_URI_V4``,
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` with an authorization token), so
the worker and botocore run exactly the code they run on Fargate.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TaskEndpoint", "TaskIdentity"]


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """What the endpoint knows of one running task."""

    task_arn: str
    cluster: str
    family: str
    revision: str
    container: str
    token: str
    credentials: dict[str, str] | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: worker output, not request logs, belongs on the console."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        ident = self.server.lookup(parts[1]) if len(parts) >= 2 else None
        if ident is None:
            self._send(404, {"message": "unknown task"})
        elif parts[0] == "creds" and len(parts) == 2:
            if self.headers.get("Authorization") != ident.token:
                self._send(401, {"message": "bad authorization token"})
            elif ident.credentials is None:
                self._send(404, {"message": "the task has no task role"})
            else:
                self._send(200, ident.credentials)
        elif parts[0] == "v4" and len(parts) == 3 and parts[2] == "task":
            self._send(200, {
                "Cluster": ident.cluster, "TaskARN": ident.task_arn, "Family": ident.family,
                "Revision": ident.revision, "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING", "LaunchType": "FARGATE",
                "Containers": [{"Name": ident.container, "KnownStatus": "RUNNING"}]})
        elif parts[0] == "v4" and len(parts) == 2:
            self._send(200, {"Name": ident.container, "KnownStatus": "RUNNING",
                             "Labels": {"com.amazonaws.ecs.task-arn": ident.task_arn,
                                        "com.amazonaws.ecs.cluster": ident.cluster}})
        else:
            self._send(404, {"message": "unknown path"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tasks: dict[str, TaskIdentity] = {}
        self.lock = threading.Lock()

    def lookup(self, task_id: str) -> TaskIdentity | None:
        with self.lock:
            return self.tasks.get(task_id)


class TaskEndpoint:
    """The metadata and credentials endpoint of every emulated task."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="starburst-ecs-agent", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def register(self, task_id: str, identity: TaskIdentity) -> dict[str, str]:
        """Serve ``identity`` for ``task_id``; return the environment a task gets for it."""
        with self._server.lock:
            self._server.tasks[task_id] = identity
        env = {"ECS_CONTAINER_METADATA_URI_V4": f"{self.url}/v4/{task_id}",
               "ECS_CONTAINER_METADATA_URI": f"{self.url}/v4/{task_id}"}
        if identity.credentials is not None:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"{self.url}/creds/{task_id}"
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = identity.token
        return env

    def unregister(self, task_id: str) -> None:
        """Stop serving a task that ended."""
        with self._server.lock:
            self._server.tasks.pop(task_id, None)

    def close(self) -> None:
        """Stop the server."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
