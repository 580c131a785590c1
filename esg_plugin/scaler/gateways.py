"""Where every gateway replica's metrics are: the running pods of the gateway.

The OpenFaaS gateway may run as several replicas behind its Service; each
counts only the requests it served. A scaler that read one of them — the
sidecar reads its own pod's ``127.0.0.1:8082/metrics`` — planned for that
part of the traffic. With ``gateway_pods`` (a label selector, ``app=gateway``
for the chart's) the gateway source reads every one (``sources.py`` sums
their counters), as Prometheus's pod discovery finds them: the pods that
selector picks in the gateway's namespace, running, not being deleted, each
at its pod IP with ``metrics_url``'s scheme, port and path. An IP that is no
IP address is not believed (that pod is left out and said in the log).
None where the list fails or no pod is running: the gateways' traffic is
not known, and the source has no data (the scaler does not act).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ..jsontext import loads_json
from .actuators.base import ApiCalls
from .actuators.errors import ApiError

log = logging.getLogger(__name__)


class GatewayPods:
    """Callable: the /metrics URL of each running gateway pod, or None.
    ``core``: a ``kubernetes`` ``CoreV1Api``; each call lists the pods once,
    waiting at most ``timeout_s`` (:class:`~.actuators.base.ApiCalls`)."""

    def __init__(self, core, namespace: str, selector: str, metrics_url: str, timeout_s: float):
        self.core, self.namespace, self.selector = core, namespace, selector
        parts = urlsplit(metrics_url)
        self.scheme, self.port, self.path = parts.scheme, parts.port, parts.path or "/metrics"
        self.api = ApiCalls(timeout_s)
        self._said: Optional[str] = None
        """The last thing said about the list, said once until it changes."""

    def __call__(self) -> Optional[list[str]]:
        self.api.new_iteration()
        try:
            answer = self.api(self.core.list_namespaced_pod, self.namespace, attempts=1, _preload_content=False,
                              label_selector=self.selector, field_selector="status.phase=Running")
            doc = loads_json(answer.data)
        except ApiError as err:
            return self._none(f"the gateway's pods could not be listed (no data: the scaler does not act): {err}")
        except ValueError as err:
            return self._none(f"the gateway's pods: a list that is not JSON ({err})")
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            return self._none("the gateway's pods: a list without its items")
        urls, odd = [], []
        for pod in items:
            if not isinstance(pod, dict):
                continue
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            if not isinstance(meta, dict) or not isinstance(status, dict) or meta.get("deletionTimestamp"):
                continue  # going away: its traffic moves to the others
            if status.get("phase") != "Running":
                continue
            url = self._url(status.get("podIP"))
            if url is None:
                odd.append(str(meta.get("name"))[:63])
                continue
            urls.append(url)
        if not urls:
            return self._none(f"no running pod of the gateway matches {self.selector!r} in {self.namespace} "
                              f"(no data: the scaler does not act)")
        self._say(f"pods without an IP address left out: {', '.join(odd)}" if odd else None)
        return sorted(set(urls))

    def _url(self, ip) -> Optional[str]:
        if not isinstance(ip, str):
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        host = f"[{address}]" if address.version == 6 else str(address)
        port = f":{self.port}" if self.port else ""
        return urlunsplit((self.scheme, host + port, self.path, "", ""))

    def _none(self, message: str) -> None:
        self._say(message)
        return None

    def _say(self, message: Optional[str]) -> None:
        if message is not None and message != self._said:
            log.warning("%s", message)
        self._said = message
