"""diagnostic_msgs helpers: one status per concern, values as key/value strings."""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
LEVELS = {"ok": OK, "warn": WARN, "error": ERROR}  # runtime.status's level names


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def status(
    name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, object]
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=_text(value)) for key, value in values.items()],
    )


def to_ros(runtime_status, name: str) -> DiagnosticStatus:
    """A runtime.status.Status as a DiagnosticStatus named `name`."""
    s = runtime_status
    return status(name, s.hardware_id, LEVELS[s.level], s.message, s.values)


def values_of(status_msg: DiagnosticStatus) -> dict[str, str]:
    """A status's key/values as a dict (for tests and tools reading /diagnostics)."""
    return {pair.key: pair.value for pair in status_msg.values}


def diagnostic_array(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    array = DiagnosticArray(status=statuses)
    array.header.stamp = stamp
    return array
