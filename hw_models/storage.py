"""Storage tiers (node-local NVMe, parallel file systems, object stores) and GPU-host links.

What a tier *is* and what one transfer costs on it; no notion of time passing. The time of
one transfer is the closed form ``latency + bytes / min(clients x per-client, aggregate)``:
a tier is limited either by what each client node can push (its storage NICs, its drives)
or by the tier as a whole. Numbers live in ``data/storage.yaml`` with their sources.

The network between the nodes and the tier (``StorageNetwork``: frontend storage NICs or the
compute fabric) is a third limit; under the flow model ``sim.storage_flows`` routes storage
transfers over it as flows that share links with training traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hw_models.errors import ClusterSimError, UnknownPresetError
from hw_models.yamlio import read_packaged

GB = 1e9
Direction = Literal["read", "write"]


class StorageTier(BaseModel):
    """One storage tier. ``None`` for a per-client or aggregate limit means unlimited."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    kind: Literal["node_local", "parallel_fs", "object_store"] = Field(description=(
        "node_local (each node its own disks), parallel_fs or object_store"))
    read_gb_s_per_client: float | None = Field(default=None, gt=0, description=(
        "read GB/s one node can reach; unset: unlimited"))
    write_gb_s_per_client: float | None = Field(default=None, gt=0, description=(
        "write GB/s one node can reach; unset: unlimited"))
    read_gb_s_aggregate: float | None = Field(default=None, gt=0, description=(
        "read GB/s of the whole tier; unset: unlimited"))
    write_gb_s_aggregate: float | None = Field(default=None, gt=0, description=(
        "write GB/s of the whole tier; unset: unlimited"))
    latency_ms: float = Field(default=0.0, ge=0, description=(
        "latency of one transfer, milliseconds"))
    source: str = Field("inline", description="where the numbers come from")

    def bandwidth(self, direction: Direction, clients: int) -> float:
        """Bytes/s that ``clients`` nodes move together: min(clients x per-client, aggregate)."""
        if clients < 1:
            raise ClusterSimError(f"storage clients must be >= 1, got {clients}")
        per = getattr(self, f"{direction}_gb_s_per_client")
        agg = getattr(self, f"{direction}_gb_s_aggregate")
        limits = [x * GB for x in (per * clients if per else None, agg) if x is not None]
        if not limits:
            raise ClusterSimError(f"storage tier ({self.kind}) has neither a per-client nor "
                                  f"an aggregate {direction} bandwidth; give one of them")
        return min(limits)

    def transfer_time(self, direction: Direction, nbytes: float, clients: int,
                      path: StoragePath | None = None) -> float:
        """Seconds to move ``nbytes`` split evenly over ``clients`` nodes:
        latency + bytes / min(aggregate, clients x per-client, fabric to storage)."""
        if nbytes < 0:
            raise ClusterSimError(f"storage transfer of negative size {nbytes}")
        bw = self.bandwidth(direction, clients)
        if path is not None:
            bw = min(bw, path.bandwidth(clients))
        return self.latency_ms * 1e-3 + nbytes / bw


@dataclass(frozen=True)
class StoragePath:
    """The network between client nodes and the tier, resolved for one system (bytes/s)."""
    attach: Literal["frontend", "backend"]
    node_bw: float                 # what one node can send to / receive from storage
    uplink_bw: float | None = None  # the fabric's storage-facing links together; None: no limit

    def bandwidth(self, clients: int) -> float:
        """min(clients x node NICs, storage-facing uplinks)."""
        bw = clients * self.node_bw
        return bw if self.uplink_bw is None else min(bw, self.uplink_bw)


class StorageNetwork(BaseModel):
    """How nodes reach storage. ``frontend``: dedicated storage NICs on a separate fabric
    (shares nothing with training traffic). ``backend``: storage hangs off the training
    fabric's top tier and its traffic uses the compute NICs (``nics_per_node``/``nic_gbps``
    left out: the system's own), sharing links with collectives."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    attach: Literal["frontend", "backend"] = Field(description=(
        "frontend: dedicated storage NICs and fabric; backend: through the compute NICs "
        "and the training fabric"))
    nics_per_node: int | None = Field(default=None, ge=1, description=(
        "storage NICs per node; unset with backend: the system's compute NICs"))
    nic_gbps: float | None = Field(default=None, gt=0, description=(
        "speed of each storage NIC, Gb/s"))
    uplink_gb_s: float | None = Field(default=None, gt=0, description=(
        "GB/s from the fabric to storage; unset: not limiting"))
    source: str = Field("inline", description="where the numbers come from")

    def resolve(self, system_nic_bw: float | None = None) -> StoragePath:
        """``system_nic_bw``: bytes/s of the node's compute NICs (for backend attach)."""
        if self.nics_per_node and self.nic_gbps:
            node = self.nics_per_node * self.nic_gbps / 8 * GB
        elif self.attach == "backend" and system_nic_bw:
            node = system_nic_bw
        else:
            raise ClusterSimError(f"storage network ({self.attach}) needs nics_per_node and "
                                  "nic_gbps (backend attach may take the system's NICs)")
        up = self.uplink_gb_s * GB if self.uplink_gb_s else None
        return StoragePath(self.attach, node, up)


class HostLink(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)
    gb_s: float = Field(gt=0)
    source: str

    @property
    def bw(self) -> float:
        return self.gb_s * GB


@cache
def _data() -> dict:
    return read_packaged("hw_models", "data", "storage.yaml")


@cache
def tiers() -> dict[str, StorageTier]:
    return {k: StorageTier(**v) for k, v in _data()["tiers"].items()}


@cache
def host_links() -> dict[str, HostLink]:
    return {k: HostLink(**v) for k, v in _data()["host_links"].items()}


@cache
def networks() -> dict[str, StorageNetwork]:
    return {k: StorageNetwork(**v) for k, v in _data()["networks"].items()}


def _lookup(ref, cls: type[BaseModel], table: dict, what: str):
    """A preset by name, or an inline mapping validated like a preset."""
    if isinstance(ref, cls):
        return ref
    if isinstance(ref, dict):
        try:
            return cls(**ref)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "storage"
            raise ClusterSimError(f"inline {what}: {where}: {err['msg']} "
                                  f"(got {err.get('input')!r})") from None
    if ref not in table:
        raise UnknownPresetError(what, ref, list(table))
    return table[ref]


def tier(ref: str | dict | StorageTier) -> StorageTier:
    return _lookup(ref, StorageTier, tiers(), "storage tier")


def network(ref: str | dict | StorageNetwork) -> StorageNetwork:
    return _lookup(ref, StorageNetwork, networks(), "storage network")


@cache
def pageable_slowdown() -> float:
    """How much slower a copy to or from pageable host memory is than the host link's line
    rate (data/storage.yaml pageable_copy, with its source)."""
    return float(_data()["pageable_copy"]["slowdown"])


def host_link(gpu_name: str) -> HostLink:
    table = host_links()
    if gpu_name not in table:
        raise UnknownPresetError("host link for gpu", gpu_name, list(table))
    return table[gpu_name]
