"""The task sizes Fargate accepts, checked before anything starts.

Source: the "Task CPU and memory" table of the Amazon ECS developer guide
(Linux, platform version 1.4). A wrong size would otherwise surface as an
``InvalidParameterException`` from RegisterTaskDefinition or RunTask,
after queues and buckets exist.
"""

from __future__ import annotations

from ..exceptions import ConfigurationError

__all__ = ["FARGATE_SIZES", "cpu_units", "valid_memory", "validate_size"]

#: vCPU -> (smallest MiB, largest MiB, step MiB).
FARGATE_SIZES: dict[float, tuple[int, int, int]] = {
    0.25: (512, 2048, 512),  # 0.5, 1 or 2 GiB; 512 steps give exactly those three
    0.5: (1024, 4096, 1024),
    1.0: (2048, 8192, 1024),
    2.0: (4096, 16384, 1024),
    4.0: (8192, 30720, 1024),
    8.0: (16384, 61440, 4096),
    16.0: (32768, 122880, 8192),
}


def valid_memory(cpu: float) -> list[int]:
    """Memory sizes in MiB Fargate accepts with ``cpu`` vCPUs (empty if cpu is invalid)."""
    if cpu not in FARGATE_SIZES:
        return []
    low, high, step = FARGATE_SIZES[cpu]
    sizes = list(range(low, high + 1, step))
    if cpu == 0.25:
        sizes.remove(1536)  # 0.25 vCPU takes 0.5, 1 or 2 GiB, not 1.5
    return sizes


def cpu_units(cpu: float) -> int:
    """vCPUs as ECS CPU units (1 vCPU = 1024 units)."""
    return round(cpu * 1024)


def validate_size(cpu: float, memory_mib: int) -> None:
    """Raise a :class:`ConfigurationError` naming valid choices unless Fargate takes the size."""
    if cpu not in FARGATE_SIZES:
        choices = ", ".join(f"{c:g}" for c in FARGATE_SIZES)
        raise ConfigurationError(f"cpu={cpu:g} is not a Fargate size; choose one of {choices}")
    sizes = valid_memory(cpu)
    if memory_mib not in sizes:
        low, high, step = FARGATE_SIZES[cpu]
        if cpu == 0.25:
            hint = "'512MB', '1GB' or '2GB'"
        else:
            hint = f"'{low // 1024}GB' to '{high // 1024}GB' in steps of {step // 1024} GB"
        raise ConfigurationError(
            f"memory={memory_mib} MiB does not fit cpu={cpu:g} on Fargate; with "
            f"cpu={cpu:g} use memory from {hint}")
