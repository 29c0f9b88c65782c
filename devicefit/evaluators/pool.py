"""A device pool: several devices of one kind (one NAME) sharing the measurements.

Each member measures one file at a time. A member that stops answering is taken
out and the measurement moves to another member; with no member left, the pool
waits for one to come back (probing the dead ones), then gives up with
DeviceUnavailable, so the trial fails as "device unavailable" and no number is
made up and no model is blamed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from devicefit.errors import DeviceUnavailable
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)

T = TypeVar("T")


class DevicePool(DeviceEvaluator):
    def __init__(
        self,
        name: str,
        members: list[DeviceEvaluator],
        wait_s: float = 120.0,
        probe_every_s: float = 5.0,
    ) -> None:
        if not members:
            raise ValueError(f"device pool {name!r} has no members")
        self.name = name
        self.members = list(members)
        self.wait_s = wait_s
        self.probe_every_s = probe_every_s
        self.dead: dict[int, str] = {}  # member index -> why it was taken out
        self._busy: set[int] = set()
        self._next = 0
        self._cond = threading.Condition()

    # Read-only here, a plain attribute on other devices: a pool's answer follows its members.
    @property
    def shares_host_cpu(self) -> bool:  # type: ignore[override]  # read-only by design
        return any(getattr(m, "shares_host_cpu", False) for m in self.members)

    def alive(self) -> list[DeviceEvaluator]:
        """The members not taken out (for not answering).

        Returns:
            Those members, in the order given.
        """
        with self._cond:
            return [m for i, m in enumerate(self.members) if i not in self.dead]

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        member, measurement = self._on_a_member(lambda m: m.measure(tflite, spec))
        measurement.device = measurement.device or member.name
        return measurement

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """Every round on one member: a pairing across two devices would compare devices.
        A member lost midway starts the rounds again on another.

        Args:
            files: the TFLite files' bytes.
            spec: the rounds to run.

        Returns:
            The rounds of the member that completed them, named as their device.

        Raises:
            TrialFailed: a file does not run on the member (not retried elsewhere).
            DeviceUnavailable: no member answered for ``wait_s`` seconds.
        """
        member, rounds = self._on_a_member(lambda m: m.measure_rounds(files, spec))
        rounds.device = rounds.device or member.name
        return rounds

    def _on_a_member(self, work: Callable[[DeviceEvaluator], T]) -> tuple[DeviceEvaluator, T]:
        """``work`` on an idle live member; moved to another when one stops answering."""
        deadline: float | None = None
        while True:
            index = self._acquire()
            if index is None:  # every member is out
                if deadline is None:
                    deadline = time.monotonic() + self.wait_s
                if time.monotonic() >= deadline:
                    reasons = "; ".join(self.dead.values())
                    raise DeviceUnavailable(
                        f"device {self.name}: no member answered for {self.wait_s:.0f} s "
                        f"({reasons})"
                    )
                self._probe_dead()
                continue
            member = self.members[index]
            try:
                return member, work(member)
            except DeviceUnavailable as exc:
                # The wait goes on across revivals: a member that answers probes but
                # fails every measurement must not keep the pool waiting forever.
                self._take_out(index, str(exc))
                continue
            finally:
                self._release(index)

    def _acquire(self) -> int | None:
        """A live, idle member (round robin), waiting while all live ones are busy."""
        with self._cond:
            while True:
                live = [i for i in range(len(self.members)) if i not in self.dead]
                if not live:
                    return None
                order = sorted(live, key=lambda i: (i - self._next) % len(self.members))
                for i in order:
                    if i not in self._busy:
                        self._busy.add(i)
                        self._next = i + 1
                        return i
                self._cond.wait(timeout=1.0)

    def _release(self, index: int) -> None:
        with self._cond:
            self._busy.discard(index)
            self._cond.notify_all()

    def _take_out(self, index: int, reason: str) -> None:
        with self._cond:
            self.dead[index] = reason
            self._cond.notify_all()

    def _probe_dead(self) -> None:
        time.sleep(self.probe_every_s)
        for index in list(self.dead):
            try:
                self.members[index].ping()
            except DeviceUnavailable:
                continue
            with self._cond:
                self.dead.pop(index, None)
                self._cond.notify_all()

    def ping(self) -> None:
        if not self.alive():
            raise DeviceUnavailable(f"device {self.name}: every member is out")

    def describe(self) -> dict[str, Any]:
        """The pool's name and every member's description.

        Returns:
            ``name`` and ``members``: each member's :meth:`describe`, or its name and why
            it is unavailable; an unreachable member is not an error here.
        """
        described = []
        for member in self.members:
            try:
                described.append(member.describe())
            except DeviceUnavailable as exc:
                described.append({"name": member.name, "unavailable": str(exc)})
        return {"name": self.name, "members": described}
