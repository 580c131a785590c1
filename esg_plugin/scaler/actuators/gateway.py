"""The ``openfaas-gateway`` actuator: replicas only, through the gateway's
REST API (see the package)."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Optional

from ...jsontext import loads_json
from ...limits import MAX_REPLICAS
from ...model import FunctionState
from .base import REPLICAS, Actuator, ApiCalls, Change, log, ready_count, reported
from .said import said_number
from .errors import ApiError, NotFound

class GatewayActuator(Actuator):
    """Replicas only, through the OpenFaaS gateway's REST API."""

    name = "openfaas-gateway"

    def __init__(self, url: str, user: Optional[str] = None, password: Optional[str] = None, timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        self.api = ApiCalls(timeout_s, keyword="timeout_s")

    def new_iteration(self) -> None:
        self.api.new_iteration()

    def _request(self, method: str, path: str, body: Optional[dict] = None, *, timeout_s: float):
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            text = response.read()
            return loads_json(text) if text else None

    def current(self, functions):
        out = {}
        for fn in functions:
            try:
                # one attempt: apply() reads again, and so does the next tick (no backoff sleeps per function
                # while the gateway is away)
                doc = self.api(self._request, "GET", f"/system/function/{fn}", attempts=1)
                replicas = said_number(doc.get("replicas", 0), "the gateway's replicas", 0, MAX_REPLICAS)
                out[fn] = FunctionState(int(replicas), 1, 0.0, 100,
                                        ready_replicas=ready_count(doc.get("availableReplicas")))
            except ApiError as err:
                if not isinstance(err, NotFound):
                    log.warning("reading %s failed: %s", fn, err)
            except (ValueError, TypeError, AttributeError) as err:
                log.warning("reading %s: not a function document: %s", fn, err)
        return out

    def apply(self, desired):
        changes = []
        current = self.current(list(desired))
        for fn, want in desired.items():
            before = current.get(fn)
            if before is not None and before.replicas == want.replicas:
                continue

            try:
                self.api(self._request, "POST", f"/system/scale-function/{fn}",
                         {"serviceName": fn, "replicas": want.replicas})
                changes.append(Change(fn, REPLICAS, before.replicas if before else None, want.replicas))
            except ApiError as err:
                changes.append(reported(fn, err, REPLICAS))
        return changes
