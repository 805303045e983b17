"""Where the large model's weights live under a memory budget.

Every layer is read once per forward pass, so a resident byte saves the same IO
time wherever it sits: the plan keeps as many whole layers resident as fit and
streams the others, each as one contiguous file range, through a few reusable
buffers. The largest layers stay resident first (fill_resident); the streamed
ones are spread evenly among the layers of their size, so that the IO thread
reads the next streamed layer while resident layers compute."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from duet import _core
from duet.gguf_file import GGUFFile
from duet.memory import anonymous_map, format_size
from duet.model import layer_key, tensor_entry

ALIGN = 4096  # O_DIRECT granularity; a segment's read may cover this much extra on each side


class BudgetTooSmallError(ValueError):
    """The budget cannot run the model at all; the message names the minimum."""


@dataclass(frozen=True)
class Segment:
    """The weights of one layer: a contiguous range of the file."""

    layer: int
    offset: int   # absolute file offset of the first byte
    nbytes: int
    tensors: tuple[str, ...]

    @property
    def read_bytes(self) -> int:
        """Bytes a buffer must hold to read this segment with aligned direct IO."""
        return self.nbytes + 2 * ALIGN


def layer_segments(gguf: GGUFFile, n_layer: int) -> list[Segment]:
    """One segment per layer; raises ValueError if a layer's tensors are not contiguous."""
    segments = []
    for layer in range(n_layer):
        prefix = f"blk.{layer}."
        infos = sorted((t for name, t in gguf.tensors.items() if name.startswith(prefix)), key=lambda t: t.offset)
        if not infos:
            raise ValueError(f"{gguf.path}: layer {layer} has no tensors")
        start, end = infos[0].offset, infos[-1].offset + infos[-1].n_bytes
        gaps = end - start - sum(t.n_bytes for t in infos)
        if gaps > 64 * len(infos):  # alignment padding only
            raise ValueError(f"{gguf.path}: the tensors of layer {layer} are not stored together; cannot stream it")
        segments.append(Segment(layer, start, end - start, tuple(t.name for t in infos)))
    return segments


@dataclass
class MemoryPlan:
    budget: int
    fixed: dict[str, int]            # what is resident whatever the plan: runtime, drafter, caches, ...
    resident: list[Segment]
    streamed: list[Segment]          # in layer order
    n_buffers: int                   # streaming buffers (0 when nothing streams)
    buffer_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def resident_bytes(self) -> int:
        return sum(s.nbytes for s in self.resident)

    @property
    def buffers_total(self) -> int:
        return self.n_buffers * self.buffer_bytes

    @property
    def planned_peak(self) -> int:
        return sum(self.fixed.values()) + self.resident_bytes + self.buffers_total

    @property
    def bytes_read_per_pass(self) -> int:
        return sum(s.nbytes for s in self.streamed)

    def expected_pass_seconds(self, storage_bytes_per_s: float, memory_bytes_per_s: float) -> dict[str, float]:
        """IO and compute time of one forward pass; the pipeline makes a pass take
        about the larger of the two."""
        io = self.bytes_read_per_pass / storage_bytes_per_s
        compute = (self.resident_bytes + self.bytes_read_per_pass) / memory_bytes_per_s
        return {"io": io, "compute": compute, "pass": max(io, compute)}

    def describe(self, storage_bytes_per_s: float, memory_bytes_per_s: float) -> str:
        times = self.expected_pass_seconds(storage_bytes_per_s, memory_bytes_per_s)
        lines = [f"budget            {format_size(self.budget)}"]
        lines += [f"  {name:<17} {format_size(n)}" for name, n in self.fixed.items()]
        lines += [
            f"  {'resident layers':<17} {format_size(self.resident_bytes)}: {_ranges([s.layer for s in self.resident])}",
            f"  {'stream buffers':<17} {format_size(self.buffers_total)} ({self.n_buffers} x {format_size(self.buffer_bytes)})",
            f"planned peak      {format_size(self.planned_peak)}",
            f"streamed layers   {_ranges([s.layer for s in self.streamed])}",
            f"read per pass     {format_size(self.bytes_read_per_pass)}",
            f"expected per pass {times['pass'] * 1e3:.1f} ms (IO {times['io'] * 1e3:.1f} ms at "
            f"{storage_bytes_per_s / 1e9:.2f} GB/s, compute {times['compute'] * 1e3:.1f} ms at "
            f"{memory_bytes_per_s / 1e9:.1f} GB/s)",
        ]
        return "\n".join(lines + self.notes)


def _ranges(layers: list[int]) -> str:
    if not layers:
        return "none"
    layers = sorted(layers)
    parts, start = [], layers[0]
    for prev, cur in zip(layers, layers[1:] + [None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


def minimum_budget(segments: list[Segment], fixed: dict[str, int]) -> int:
    """Nothing resident, two buffers: one computing while the other fills."""
    return sum(fixed.values()) + 2 * max(s.read_bytes for s in segments)


def spread_evenly(n_total: int, n_pick: int) -> list[int]:
    """n_pick indices out of range(n_total), as evenly spaced as possible."""
    return sorted({min(n_total - 1, int((j + 0.5) * n_total / n_pick)) for j in range(n_pick)})


def fill_resident(segments: list[Segment], room: int) -> set[int]:
    """The layers to keep resident in `room` bytes, so that few bytes are left to
    read per pass: the largest layers first, then smaller ones into what room is
    left (a quantization mix gives layers of two or three sizes; counting every
    layer as the largest left up to a layer's room unused: target-only at 1 GiB,
    183 MiB read per pass where 151 do). Among layers of one size, those streamed
    are spread evenly, so that the reader fills a buffer while resident layers
    compute."""
    resident: set[int] = set()
    for size in sorted({s.nbytes for s in segments}, reverse=True):
        members = [i for i, s in enumerate(segments) if s.nbytes == size]
        fit = min(len(members), max(0, room) // size)
        left_out = {members[j] for j in spread_evenly(len(members), len(members) - fit)}
        resident |= set(members) - left_out
        room -= fit * size
    return resident


def plan_memory(segments: list[Segment], budget: int, fixed: dict[str, int], max_buffers: int = 4,
                n_buffers: int | None = None) -> MemoryPlan:
    """Splits the layers into resident and streamed under `budget`. n_buffers: the
    streaming buffers a reader already holds (a plan replacing another at run
    time), counted whether or not this plan streams; default: chosen here.

    Raises BudgetTooSmallError naming the minimum if the budget cannot run at all."""
    floor = minimum_budget(segments, fixed)
    if budget < floor:
        raise BudgetTooSmallError(
            f"a budget of {format_size(budget)} is too small: this model needs at least {format_size(floor)} "
            f"({', '.join(f'{k} {format_size(v)}' for k, v in fixed.items())}, and two streaming buffers)")
    buffer_bytes = max(s.read_bytes for s in segments)
    held = 0 if n_buffers is None else n_buffers * buffer_bytes
    room = budget - sum(fixed.values())
    if sum(s.nbytes for s in segments) <= room - held:
        return MemoryPlan(budget, fixed, list(segments), [], n_buffers or 0, buffer_bytes if n_buffers else 0,
                          ["everything resident: nothing streams"])
    resident_idx = fill_resident(segments, room - (held or 2 * buffer_bytes))
    resident = [s for i, s in enumerate(segments) if i in resident_idx]
    streamed = [s for i, s in enumerate(segments) if i not in resident_idx]
    if n_buffers is None:
        spare = room - sum(s.nbytes for s in resident) - 2 * buffer_bytes
        n_buffers = min(max_buffers, len(streamed), 2 + max(0, spare) // buffer_bytes)
    return MemoryPlan(budget, fixed, resident, streamed, n_buffers, buffer_bytes)


def returnable_copy(data: np.ndarray) -> np.ndarray:
    """A copy of uint8 data in its own anonymous mapping, which goes back to the
    system when the array is dropped: from the heap, a layer freed by a replan
    would stay in the process, and the next plan's layers would go over budget."""
    out = np.frombuffer(anonymous_map(data.size), dtype=np.uint8, count=data.size)
    out[:] = data
    return out


def segment_tensors(gguf: GGUFFile, segment: Segment, data: np.ndarray) -> dict:
    """The layer's tensor entries (as duet._core.TransformerLayer takes them) over
    `data`, a uint8 array holding the segment's bytes from its first byte on."""
    entries = {}
    for name in segment.tensors:
        info = gguf.tensor(name)
        start = info.offset - segment.offset
        entries[layer_key(name)] = tensor_entry(info, data[start:start + info.n_bytes])
    return entries


class StreamedLayers:
    """The layers of a model under a MemoryPlan: resident ones copied into this
    process's memory at load (no file pages stay mapped), streamed ones read every
    pass into the reader's buffers, n_buffers reads ahead. The streamed order is
    the same every pass, so reading runs on cyclically: the next pass's first
    layers load while this pass finishes (LM head, sampling, drafting)."""

    def __init__(self, gguf: GGUFFile, plan: MemoryPlan, shape: dict, direct_io: bool = True):
        self.gguf = gguf
        self.plan = plan
        self.shape = shape
        self.n_buffers = max(plan.n_buffers, 1)  # resident layers load through one buffer too
        buffer_bytes = max(plan.buffer_bytes, max((s.read_bytes for s in plan.resident), default=ALIGN))
        self.reader = _core.FileReader(str(gguf.path), self.n_buffers, buffer_bytes, direct_io)
        self.resident = {s.layer: self._load_resident(s) for s in plan.resident}
        self.n_layer = len(plan.resident) + len(plan.streamed)
        self._reading = list(plan.streamed)  # segments read each pass, in layer order
        self._promote: set[int] = set()     # layers to keep resident when next read (replan)
        self._pending: deque = deque()  # (segment, ticket) in flight, in the order they will be used
        self._next_stream = 0           # index into _reading of the next read to queue

    def replan(self, plan: MemoryPlan) -> None:
        """Moves to another plan of the same layers (more layers resident while a
        drafter is parked, and back). Layers the new plan streams are freed at once;
        layers it keeps resident are kept from the next pass's reads (a copy, no
        extra reading, so memory grows as the caller freed room for it). The
        plan must count this reader's buffers (plan_memory's n_buffers)."""
        keep = {s.layer for s in plan.resident}
        demoted = [layer for layer in self.resident if layer not in keep]
        for layer in demoted:
            del self.resident[layer]
        if demoted:  # reads in flight skip them: start the cycle again
            self._drain()
        self._promote = keep - set(self.resident)
        self.plan = plan
        self._set_reading([s for s in plan.streamed + plan.resident if s.layer not in self.resident])

    def _set_reading(self, segments: list[Segment]) -> None:
        """A new read order; the next read queued follows the last one in flight."""
        self._reading = sorted(segments, key=lambda s: s.layer)
        last = self._pending[-1][0].layer if self._pending else None
        self._next_stream = 0 if last is None else \
            next((i for i, s in enumerate(self._reading) if s.layer > last), 0)

    def _load_resident(self, segment: Segment) -> "_core.TransformerLayer":
        ticket = self.reader.submit(segment.offset, segment.nbytes)
        try:
            data = returnable_copy(self.reader.wait(ticket)[: segment.nbytes])
        finally:
            self.reader.release(ticket)
        return _core.TransformerLayer(self.shape, segment_tensors(self.gguf, segment, data))

    def _queue_reads(self) -> None:
        while self._reading and len(self._pending) < self.n_buffers:
            segment = self._reading[self._next_stream]
            self._pending.append((segment, self.reader.submit(segment.offset, segment.nbytes)))
            self._next_stream = (self._next_stream + 1) % len(self._reading)

    def _streamed_layer(self, segment: Segment, data: np.ndarray) -> "_core.TransformerLayer":
        """The layer over a buffer's bytes, or over a copy kept resident (replan)."""
        if segment.layer not in self._promote:
            return _core.TransformerLayer(self.shape, segment_tensors(self.gguf, segment, data))
        layer = _core.TransformerLayer(self.shape, segment_tensors(self.gguf, segment,
                                                                   returnable_copy(data[: segment.nbytes])))
        self.resident[segment.layer] = layer
        self._promote.discard(segment.layer)
        self._set_reading([s for s in self._reading if s.layer != segment.layer])
        return layer

    def __iter__(self) -> Iterator["_core.TransformerLayer"]:
        self._queue_reads()
        try:
            for index in range(self.n_layer):
                if index in self.resident:
                    if self._pending and self._pending[0][0].layer == index:
                        self._drop_read()  # queued before the layer became resident
                    yield self.resident[index]
                    continue
                segment, ticket = self._pending.popleft()
                assert segment.layer == index, "streamed reads out of order"
                try:
                    yield self._streamed_layer(segment, self.reader.wait(ticket))
                finally:
                    self.reader.release(ticket)
                    self._queue_reads()
        except BaseException:
            self._drain()
            raise

    def _drop_read(self) -> None:
        _, ticket = self._pending.popleft()
        try:
            self.reader.wait(ticket)
        except Exception:  # a failed pass's error is the one to report; a dropped read's is moot
            pass
        self.reader.release(ticket)

    def _drain(self) -> None:
        """After a failed pass or a replan: let reads in flight finish, drop them,
        and start the next pass from the first streamed layer."""
        while self._pending:
            self._drop_read()
        self._next_stream = 0

    def load_tensor(self, info) -> np.ndarray:
        """A whole tensor copied into this process's memory through the reader, in
        buffer-sized pieces (the output head under a budget: never mapped)."""
        out = np.empty(info.n_bytes, dtype=np.uint8)
        step = self.reader.buffer_bytes - 2 * ALIGN
        for start in range(0, info.n_bytes, step):
            size = min(step, info.n_bytes - start)
            ticket = self.reader.submit(info.offset + start, size)
            try:
                out[start:start + size] = self.reader.wait(ticket)[:size]
            finally:
                self.reader.release(ticket)
        return out

    def io_stats(self) -> dict:
        return self.reader.stats()
