"""Prometheus metrics of the backend, for admins and for MYAPP_METRICS_TOKEN (metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..deps import AdminDep
from ..metrics import metrics_response

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Metrics in Prometheus' text format (admins, or MYAPP_METRICS_TOKEN)",
)
def read_metrics(request: Request, actor: AdminDep) -> Response:
    return metrics_response(request.app.state.metrics)
