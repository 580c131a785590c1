"""The workflow router: one request through a workflow's DAG, stage by stage, through the gateway."""

from .router import Router, StageFailed, make_router_server

__all__ = ["Router", "StageFailed", "make_router_server"]
