"""A minimal HuggingFace-Hub-compatible HTTP server for offline tests of push / load by repo id.

It implements the part of the Hub protocol that `huggingface_hub` 2.x uses for `create_repo`,
`create_commit` (preupload + NDJSON commit, every file committed as a "regular" base64 blob, so neither LFS nor
Xet is needed), `model_info` / `repo_info` (with and without a revision), `list_repo_files` (tree API), README
metadata validation, and downloads through `/{repo_id}/resolve/{revision}/{filename}` (GET and HEAD, with the
ETag / X-Repo-Commit / Content-Length headers `hf_hub_download` relies on).

Every commit is stored as a full snapshot directory `<root>/<type>s/<namespace>/<name>/<commit sha>/`, so any past
revision stays downloadable; `refs.json` maps branch names to commit shas.

Use it through `HubServer` (a context manager that serves on 127.0.0.1 on a free port from a daemon thread):

    with HubServer(tmp_path) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
"""

import base64
import hashlib
import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = ("model", "dataset", "space")
_REFS_FILE = "refs.json"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob: what the Hub returns as the ETag of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubError(Exception):
    """An HTTP error answered with the `X-Error-Code` header huggingface_hub maps to its exceptions."""

    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


class RepoStore:
    """On-disk repositories: one snapshot directory per commit, branches in refs.json. Thread-safe writes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        parts = repo_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
            raise HubError(400, f"invalid repo id {repo_id!r} (expected 'namespace/name')")
        return self.root / f"{repo_type}s" / parts[0] / parts[1]

    def _refs(self, repo_dir: Path) -> dict:
        if not repo_dir.is_dir():
            raise HubError(404, "Repository not found", "RepoNotFound")
        return json.loads((repo_dir / _REFS_FILE).read_text())

    def create(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Create an empty repository with one initial commit; False if it already exists."""
        repo_dir = self.repo_dir(repo_type, repo_id)
        with self.lock:
            if repo_dir.exists():
                return False
            sha = hashlib.sha1(f"init {repo_type} {repo_id} {time.time_ns()}".encode()).hexdigest()
            (repo_dir / sha).mkdir(parents=True)
            (repo_dir / _REFS_FILE).write_text(json.dumps({"branches": {"main": sha}, "private": private}))
        return True

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> tuple[Path, str]:
        """(snapshot directory, commit sha) of a branch name or a full commit sha."""
        repo_dir = self.repo_dir(repo_type, repo_id)
        refs = self._refs(repo_dir)
        revision = unquote(revision)
        sha = refs["branches"].get(revision)
        if sha is None and len(revision) == 40 and (repo_dir / revision).is_dir():
            sha = revision
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo_dir / sha, sha

    def is_private(self, repo_type: str, repo_id: str) -> bool:
        return bool(self._refs(self.repo_dir(repo_type, repo_id)).get("private"))

    def commit(self, repo_type: str, repo_id: str, branch: str, header: dict, operations: list[dict]) -> str:
        """Apply NDJSON commit operations on top of `branch`; returns the new commit sha."""
        repo_dir = self.repo_dir(repo_type, repo_id)
        with self.lock:
            refs = self._refs(repo_dir)
            branch = unquote(branch)
            if branch not in refs["branches"]:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = refs["branches"][branch]
            if header.get("parentCommit") not in (None, parent):
                raise HubError(412, f"parentCommit {header['parentCommit']} is not the head of {branch} ({parent})")
            digest = hashlib.sha1(parent.encode() + json.dumps([header, operations], sort_keys=True).encode())
            sha = digest.hexdigest()
            staging = repo_dir / f".staging-{sha}"
            shutil.copytree(repo_dir / parent, staging)
            try:
                for op in operations:
                    self._apply(staging, op)
            except Exception:
                shutil.rmtree(staging)
                raise
            staging.rename(repo_dir / sha)
            refs["branches"][branch] = sha
            (repo_dir / _REFS_FILE).write_text(json.dumps(refs))
        return sha

    @staticmethod
    def _apply(snapshot: Path, op: dict) -> None:
        key, value = op["key"], op["value"]
        target = (snapshot / value["path"]).resolve()
        if snapshot.resolve() not in target.parents:
            raise HubError(400, f"path {value['path']!r} escapes the repository")
        if key == "file":
            if value.get("encoding") != "base64":
                raise HubError(400, f"unsupported encoding {value.get('encoding')!r} for {value['path']}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(value["content"]))
        elif key == "deletedFile":
            if not target.is_file():
                raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            target.unlink()
        elif key == "deletedFolder":
            shutil.rmtree(target, ignore_errors=True)
        else:
            # lfsFile would need the LFS batch API: this server answers "regular" to every preupload request.
            raise HubError(400, f"unsupported commit operation {key!r} (this test hub stores regular files only)")


def list_files(snapshot: Path) -> list[str]:
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestHub/1.0"

    store: RepoStore  # set on the subclass built by HubServer
    endpoint: str

    def log_message(self, format, *args):
        self.server.request_log.append(f"{self.command} {self.path}")

    # ---- plumbing -------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type="application/json", headers=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, head=False):
        self._send(status, json.dumps(payload).encode(), head=head)

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            self._route(method, parts, query)
        except HubError as err:
            headers = {"X-Error-Code": err.error_code} if err.error_code else {}
            headers["X-Error-Message"] = err.message
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers=headers, head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # ---- routes ---------------------------------------------------------------------------------------------
    def _route(self, method, parts, query):
        if parts[:1] == ["api"]:
            return self._route_api(method, parts[1:], query)
        # /{repo_id}/resolve/{rev}/{path} (models) or /{datasets|spaces}/{repo_id}/resolve/...
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), method == "HEAD")
        raise HubError(404, f"no route for {method} {self.path}")

    def _route_api(self, method, parts, query):
        if method == "POST" and parts == ["repos", "create"]:
            return self._create_repo()
        if method == "POST" and parts == ["validate-yaml"]:
            return self._validate_yaml()
        if method == "GET" and parts == ["whoami-v2"]:
            return self._whoami()
        if len(parts) >= 3 and parts[0][:-1] in REPO_TYPES:
            repo_type, repo_id, rest = parts[0][:-1], "/".join(parts[1:3]), parts[3:]
            if method == "POST" and len(rest) >= 2 and rest[0] == "preupload":
                return self._preupload(repo_type, repo_id, "/".join(rest[1:]))
            if method == "POST" and len(rest) >= 2 and rest[0] == "commit":
                return self._commit(repo_type, repo_id, "/".join(rest[1:]))
            if method == "GET" and not rest:
                return self._repo_info(repo_type, repo_id, "main")
            if method == "GET" and len(rest) >= 2 and rest[0] == "revision":
                return self._repo_info(repo_type, repo_id, "/".join(rest[1:]))
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
        raise HubError(404, f"no route for {method} {self.path}")

    def _whoami(self):
        # Like the Hub: any bearer token names the user, none is a 401 (the tests' token is accepted as is).
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(200, {"type": "user", "name": "tester", "auth": {"type": "access_token"}})

    def _create_repo(self):
        payload = json.loads(self._body())
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.endpoint}/{prefix}{repo_id}"
        if not self.store.create(repo_type, repo_id, payload.get("visibility") == "private"):
            # The Hub answers a conflict with the existing repo's url, which create_repo(exist_ok=True) returns.
            return self._json(409, {"error": "You already created this model repo", "url": url})
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self):
        content = json.loads(self._body())["content"]
        errors = []
        if content.startswith("---"):
            block = content.split("---", 2)
            try:
                if len(block) < 3:
                    raise yaml.YAMLError("metadata block is not closed by '---'")
                if not isinstance(yaml.safe_load(block[1]) or {}, dict):
                    raise yaml.YAMLError("metadata is not a mapping")
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML metadata: {err}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _preupload(self, repo_type, repo_id, revision):
        snapshot, _ = self.store.resolve(repo_type, repo_id, revision)
        files = json.loads(self._body())["files"]
        answer = []
        for entry in files:
            existing = snapshot / entry["path"]
            oid = git_blob_sha1(existing.read_bytes()) if existing.is_file() else None
            answer.append({"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": answer, "commitOid": self.store.resolve(repo_type, repo_id, revision)[1]})

    def _commit(self, repo_type, repo_id, revision):
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        sha = self.store.commit(repo_type, repo_id, revision, lines[0]["value"], lines[1:])
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        commit_url = f"{self.endpoint}/{prefix}{repo_id}/commit/{sha}"
        self._json(200, {"commitUrl": commit_url, "commitOid": sha, "pullRequestUrl": None, "success": True})

    def _repo_info(self, repo_type, repo_id, revision):
        snapshot, sha = self.store.resolve(repo_type, repo_id, revision)
        files = list_files(snapshot)
        self._json(
            200,
            {
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": self.store.is_private(repo_type, repo_id),
                "siblings": [{"rfilename": name} for name in files],
                "tags": [],
            },
        )

    def _tree(self, repo_type, repo_id, revision, path, query):
        snapshot, _ = self.store.resolve(repo_type, repo_id, revision)
        base = snapshot / path if path else snapshot
        if not base.is_dir():
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = base.rglob("*") if recursive else base.iterdir()
        out = []
        for entry in sorted(entries):
            rel = entry.relative_to(snapshot).as_posix()
            if entry.is_dir():
                out.append({"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()})
            else:
                content = entry.read_bytes()
                out.append({"type": "file", "path": rel, "size": len(content), "oid": git_blob_sha1(content)})
        self._json(200, out)

    def _resolve(self, repo_type, repo_id, revision, filename, head):
        snapshot, sha = self.store.resolve(repo_type, repo_id, revision)
        path = snapshot / filename
        if not path.is_file():
            raise HubError(404, f"Entry not found: {filename}", "EntryNotFound")
        content = path.read_bytes()
        headers = {"ETag": f'"{git_blob_sha1(content)}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        self._send(200, content, content_type="application/octet-stream", headers=headers, head=head)


class HubServer:
    """Serve `RepoStore(root)` on 127.0.0.1 (a free port) from a daemon thread; `endpoint` is the base URL."""

    def __init__(self, root: Path, port: int = 0):
        self.store = RepoStore(root)
        handler = type("BoundHubRequestHandler", (HubRequestHandler,), {"store": self.store})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.request_log = []
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.endpoint = self.endpoint
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-hub", daemon=True)

    @property
    def request_log(self) -> list[str]:
        return self.httpd.request_log

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


if __name__ == "__main__":  # the README's worked example: a local Hub on 127.0.0.1 until Ctrl-C
    import argparse

    cli = argparse.ArgumentParser(description="A local Hugging Face Hub-compatible server on 127.0.0.1")
    cli.add_argument("--port", type=int, default=8765)
    cli.add_argument("--storage", type=Path, required=True, help="folder that holds the repositories")
    options = cli.parse_args()
    with HubServer(options.storage, options.port) as hub:
        print(f"serving {options.storage} at {hub.endpoint}", flush=True)
        while True:
            time.sleep(3600)
