"""Task maps (RFC 34; SPEC 3.5): which node each task rank runs on.

A map is a list of blocks ``[nodeid, nnodes, ppn, repeat]``: ``repeat`` times, the nodes
``nodeid .. nodeid+nnodes-1`` each take the next ``ppn`` task ranks in turn.  ``[]`` means
the mapping is unknown.  Forms:

- JSON array ``[[0,4,4,1]]`` (block 4x4), ``[[0,4,1,4]]`` (cyclic 4x4), ``[[0,4,2,2]]``
  (cyclic:2); wrapped ``{"version":1,"map":[...]}`` (the ``shell.start`` event's ``taskmap``)
- raw: per-node task idsets joined by ``;``: ``0-3;4-7``
- PMI ``PMI_process_mapping``: ``(vector,(0,4,4))``
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from flux.core.util import idset


class TaskMapError(ValueError):
    """A malformed task map; the message names the problem."""


def _check_block(b: object, where: str) -> list[int]:
    if not isinstance(b, (list, tuple)) or len(b) != 4:
        raise TaskMapError(f"{where}: a block must be [nodeid, nnodes, ppn, repeat]")
    for v in b:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TaskMapError(f"{where}: block values must be integers, got {list(b)!r}")
    nodeid, nnodes, ppn, repeat = b
    if nodeid < 0 or nnodes <= 0 or ppn <= 0 or repeat <= 0:
        raise TaskMapError(f"{where}: invalid block [{nodeid},{nnodes},{ppn},{repeat}]")
    return [nodeid, nnodes, ppn, repeat]


class TaskMap:
    """An RFC 34 task map.  Build one with :meth:`append`, :meth:`block`, :meth:`cyclic`
    or :meth:`decode`; query it with :meth:`nodeid`, :meth:`taskids`, :meth:`ntasks`."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: Iterable[Sequence[int]] = ()):
        self.blocks: list[list[int]] = [_check_block(b, f"taskmap block {i}")
                                        for i, b in enumerate(blocks)]

    # ------------------------------------------------------------ building

    def append(self, nodeid: int, nnodes: int = 1, ppn: int = 1) -> TaskMap:
        """Give the next ``nnodes * ppn`` task ranks to nodes ``nodeid..`` (``ppn`` each),
        merging into the previous block where the result is the same map."""
        if nodeid < 0 or nnodes <= 0 or ppn <= 0:
            raise TaskMapError(f"invalid taskmap append ({nodeid}, {nnodes}, {ppn})")
        blocks = self.blocks
        if blocks:
            last = blocks[-1]
            start, n, p, rep = last
            if nodeid == start + n and ppn == p and rep == 1:
                last[1] += nnodes
                self._merge_repeats()
                return self
            if start == nodeid and n == 1 and nnodes == 1 and rep == 1:
                last[2] += ppn
                self._merge_repeats()
                return self
            if start == nodeid and n == nnodes and p == ppn:
                last[3] += 1
                return self
        blocks.append([nodeid, nnodes, ppn, 1])
        return self

    def _merge_repeats(self) -> None:
        out: list[list[int]] = []
        for b in self.blocks:
            if out and out[-1][0] == b[0] and out[-1][1] == b[1] and out[-1][2] == b[2]:
                out[-1][3] += b[3]
            else:
                out.append(b)
        self.blocks = out

    @classmethod
    def block(cls, counts: Sequence[int]) -> TaskMap:
        """Consecutive task ranks fill each node in turn (``counts[i]`` tasks on node i)."""
        m = cls()
        for node, n in enumerate(counts):
            if n > 0:
                m.append(node, 1, n)
        return m

    @classmethod
    def cyclic(cls, counts: Sequence[int], chunk: int = 1) -> TaskMap:
        """Task ranks dealt round-robin, ``chunk`` at a time, to nodes that still have room."""
        if chunk <= 0:
            raise TaskMapError(f"cyclic chunk size must be >= 1, not {chunk}")
        left = list(counts)
        m = cls()
        while any(n > 0 for n in left):
            for node, n in enumerate(left):
                if n > 0:
                    take = min(chunk, n)
                    m.append(node, 1, take)
                    left[node] = n - take
        return m

    # ------------------------------------------------------------ decoding

    @classmethod
    def decode(cls, value: str | bytes | list | dict) -> TaskMap:
        """Any form: JSON array or wrapped object (text or already decoded), a PMI
        ``(vector,...)`` string (``""`` is an unknown map), or the raw ``;`` form."""
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode()
        if isinstance(value, str):
            text = value.strip()
            if not text or "vector," in text:
                return cls.from_pmi(text)
            if text[0] in "[{":
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise TaskMapError(f"invalid taskmap JSON: {exc}") from None
            else:
                return cls.from_raw(text)
        if isinstance(value, dict):
            if value.get("version") != 1 or "map" not in value:
                raise TaskMapError("wrapped taskmap must be {\"version\":1, \"map\":[...]}")
            value = value["map"]
        if not isinstance(value, list):
            raise TaskMapError("taskmap must be an array or a wrapped object")
        return cls(value)

    @classmethod
    def from_pmi(cls, text: str) -> TaskMap:
        """Parse ``PMI_process_mapping``: ``(vector,(nodeid,nnodes,ppn),...)``."""
        text = text.strip()
        m = cls()
        if not text:
            return m
        if not text.startswith("(vector,"):
            raise TaskMapError(f"PMI process mapping must start with '(vector,': '{text}'")
        body = text[len("(vector,"):]
        if body.endswith(")"):
            body = body[:-1]
        for part in body.split("("):
            part = part.strip().rstrip(",").strip()
            if not part:
                continue
            if not part.endswith(")"):
                raise TaskMapError(f"unable to parse PMI block '({part}'")
            fields = part[:-1].split(",")
            if len(fields) != 3 or not all(f.strip().isdigit() for f in fields):
                raise TaskMapError(f"unable to parse PMI block '({part}'")
            nodeid, nnodes, ppn = (int(f) for f in fields)
            if nnodes <= 0 or ppn <= 0:
                raise TaskMapError(f"invalid number in PMI block '({part}'")
            m.append(nodeid, nnodes, ppn)
        if not m.blocks:
            raise TaskMapError("no tasks found in PMI process mapping")
        return m

    @classmethod
    def from_raw(cls, text: str) -> TaskMap:
        """Parse the raw form: node i's task ids are the i-th ``;``-separated idset."""
        owner: dict[int, int] = {}
        for node, part in enumerate(text.strip().split(";")):
            try:
                ids = idset.decode(part)
            except ValueError as exc:
                raise TaskMapError(f"raw taskmap node {node}: {exc}") from None
            for t in ids:
                if t in owner:
                    raise TaskMapError(f"raw taskmap: task {t} is on nodes {owner[t]} and {node}")
                owner[t] = node
        if sorted(owner) != list(range(len(owner))):
            raise TaskMapError("raw taskmap: task ids must be 0..N-1 with no gaps")
        m = cls()
        run_node, run_len = -1, 0
        for t in range(len(owner)):  # runs of consecutive ranks on one node
            if owner[t] == run_node:
                run_len += 1
                continue
            if run_len:
                m.append(run_node, 1, run_len)
            run_node, run_len = owner[t], 1
        if run_len:
            m.append(run_node, 1, run_len)
        return m

    # ------------------------------------------------------------- queries

    @property
    def unknown(self) -> bool:
        """True for the empty map, which means "mapping not known"."""
        return not self.blocks

    @property
    def nnodes(self) -> int:
        """Number of nodes (highest node id + 1)."""
        return max((b[0] + b[1] for b in self.blocks), default=0)

    @property
    def total_ntasks(self) -> int:
        return sum(b[1] * b[2] * b[3] for b in self.blocks)

    def nodeid(self, taskid: int) -> int:
        """The node that runs task rank ``taskid`` (LookupError if out of range)."""
        if taskid < 0:
            raise LookupError(f"task {taskid} is not in the taskmap")
        current = 0
        for start, nnodes, ppn, repeat in self.blocks:
            size = nnodes * ppn
            if taskid < current + size * repeat:
                offset = (taskid - current) % size
                return start + offset // ppn
            current += size * repeat
        raise LookupError(f"task {taskid} is not in the taskmap")

    def taskids(self, nodeid: int) -> list[int]:
        """Task ranks on node ``nodeid``, ascending (empty if none)."""
        out: list[int] = []
        current = 0
        for start, nnodes, ppn, repeat in self.blocks:
            for _ in range(repeat):
                if start <= nodeid < start + nnodes:
                    first = current + (nodeid - start) * ppn
                    out.extend(range(first, first + ppn))
                current += nnodes * ppn
        return out

    def ntasks(self, nodeid: int) -> int:
        n = 0
        for start, nnodes, ppn, repeat in self.blocks:
            if start <= nodeid < start + nnodes:
                n += ppn * repeat
        return n

    def check(self, other: TaskMap) -> None:
        """Raise TaskMapError unless ``other`` has the same nodes and tasks per node."""
        if self.nnodes != other.nnodes:
            raise TaskMapError(f"got {other.nnodes} nodes, expected {self.nnodes}")
        if self.total_ntasks != other.total_ntasks:
            raise TaskMapError(f"got {other.total_ntasks} total tasks, expected {self.total_ntasks}")
        for i in range(self.nnodes):
            if self.ntasks(i) != other.ntasks(i):
                raise TaskMapError(f"node {i} has {other.ntasks(i)} tasks, expected {self.ntasks(i)}")

    # ------------------------------------------------------------ encoding

    def to_list(self) -> list[list[int]]:
        return [list(b) for b in self.blocks]

    def to_dict(self) -> dict:
        """The wrapped form ``{"version": 1, "map": [...]}``."""
        return {"version": 1, "map": self.to_list()}

    def encode(self, form: str = "json") -> str:
        """``json`` (compact array), ``wrapped``, ``pmi``, ``raw`` or ``raw_deranged``
        (raw with every id listed, no ranges)."""
        if form == "json":
            return json.dumps(self.blocks, separators=(",", ":"))
        if form == "wrapped":
            return json.dumps(self.to_dict(), separators=(",", ":"))
        if form == "pmi":
            if not self.blocks:
                return ""
            parts = []
            for start, nnodes, ppn, repeat in self.blocks:
                parts.extend([f"({start},{nnodes},{ppn})"] * repeat)
            return "(vector," + ",".join(parts) + ")"
        if form in ("raw", "raw_deranged"):
            per_node = [self.taskids(i) for i in range(self.nnodes)]
            if form == "raw":
                return ";".join(idset.encode(ids) for ids in per_node)
            return ";".join(",".join(map(str, ids)) for ids in per_node)
        raise ValueError(f"unknown taskmap form '{form}' (json, wrapped, pmi, raw, raw_deranged)")

    def __str__(self) -> str:
        return self.encode("json")

    def __repr__(self) -> str:
        return f"TaskMap({self.blocks!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TaskMap):
            return self.blocks == other.blocks
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
