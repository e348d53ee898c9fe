"""What the heartbeat says about this machine: CPU, RAM, load, GPUs, local Ollama models.

psutil calls are non-blocking (`cpu_percent(interval=None)` compares with the previous call);
NVIDIA GPUs are read through nvidia-ml-py when it is installed; Ollama's `GET /api/tags` has a
short timeout. A probe that fails leaves its field empty and never delays the heartbeat.
"""

import asyncio
import contextlib
import importlib
import os
import socket
from typing import Any

import httpx
import psutil

from agentcom_common.contracts.agent import GpuLoad, Heartbeat
from agentcom_sidecar.namespaces import Isolation


def supervisor() -> str:
    """Which supervisor runs this process: systemd, pm2, a named one, or none."""
    if named := os.environ.get("AGENTCOM_SUPERVISOR"):
        return named[:64]
    if os.environ.get("INVOCATION_ID") and os.environ.get("JOURNAL_STREAM"):
        return "systemd"
    if "pm_id" in os.environ or "PM2_HOME" in os.environ:
        return "pm2"
    return "none"


def gpus() -> list[GpuLoad]:
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return []
    found: list[GpuLoad] = []
    with contextlib.suppress(Exception):  # no driver, no device: no GPUs to report
        nvml.nvmlInit()
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                name = nvml.nvmlDeviceGetName(handle)
                found.append(
                    GpuLoad(
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        memory_used_mb=memory.used / 2**20,
                        memory_total_mb=memory.total / 2**20,
                        utilization_percent=float(util.gpu),
                    )
                )
        finally:
            nvml.nvmlShutdown()
    return found


async def ollama_models(url: str | None, timeout: float = 2.0) -> list[str]:
    if not url:
        return []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            tags = (await client.get("/api/tags")).json()
        return [str(m["name"]) for m in tags.get("models", [])][:500]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return []


async def heartbeat(
    agent_id: str,
    ollama_url: str | None,
    task_id: str | None,
    isolation: Isolation | None = None,
    blocked: str | None = None,
) -> Heartbeat:
    cards = await asyncio.to_thread(gpus)  # NVML can be slow to answer; never stall the loop
    vram = None
    if cards and (total := sum(g.memory_total_mb for g in cards)):
        vram = min(100.0, 100 * sum(g.memory_used_mb for g in cards) / total)
    return Heartbeat(
        kind="heartbeat",
        agent_id=agent_id,
        cpu_percent=min(100.0, psutil.cpu_percent(interval=None)),
        ram_percent=psutil.virtual_memory().percent,
        load=os.getloadavg()[0],
        vram_percent=vram,
        gpus=cards,
        host=socket.gethostname()[:255],
        ollama_url=ollama_url,
        models=await ollama_models(ollama_url),
        task_id=task_id,
        isolation=isolation,
        blocked=blocked,
    )
