"""Bootstrap a broker through PMI-1 (the simple wire protocol on PMI_FD).

Used when the broker is a task of a launcher that serves PMI: our own job shell,
or Slurm's `srun --mpi=pmi2` (whose server answers PMI-1 when the first line asks
for version 1). Each broker:

1. learns its rank and size (PMI_RANK, PMI_SIZE), the kvsname (the enclosing job's
   id when Flux launched us) and the preloaded `flux.instance-level`;
2. binds its overlay socket: `ipc://` in its rundir when every broker is on one
   node (PMI_process_mapping has one node), else `tcp://ADDR:*` on the address
   of the interface with the default route (tbon.interface-hint or
   FLUX_IPADDR_INTERFACE to choose, `-Stbon.prefertcp=1` to force tcp), with an
   ephemeral CURVE key pair;
3. puts its business card `flux.bizcard.<rank>` = `URI,PUBKEY,HOSTNAME` (no
   spaces, well under 1024 bytes), barriers, gets every card: its parent's gives
   the endpoint and server key to connect to, all give the hostlist;
4. finalizes and closes PMI_FD (and drops PMI_* from its environment, so
   processes it starts do not think they are PMI tasks).

The client obeys the rules Slurm's server imposes: one request per write, lines of
at most 1024 bytes, a put is read only after a barrier, and no PMI-2 command is
ever sent.
"""

from __future__ import annotations

import errno
import os
import socket
import time

from flux.core.errors import FluxError

MAX_REQUEST = 1024  # bytes, newline included (Slurm drops the rest)


class PMIError(FluxError):
    pass


class SimpleClient:
    """A blocking PMI-1 client on an inherited file descriptor."""

    def __init__(self, fd: int, rank: int, size: int, debug: bool = False):
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self.rank = rank
        self.size = size
        self.debug = debug
        self.buf = b""
        self.kvsname = ""
        self.vallen_max = 1024
        self.keylen_max = 64

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SimpleClient:
        env = os.environ if env is None else env
        try:
            fd, rank, size = int(env["PMI_FD"]), int(env["PMI_RANK"]), int(env["PMI_SIZE"])
        except (KeyError, ValueError) as exc:
            raise PMIError(errno.EINVAL, f"PMI_FD, PMI_RANK and PMI_SIZE must be integers: "
                                         f"{exc}") from None
        if not 0 <= rank < size:
            raise PMIError(errno.EINVAL, f"PMI_RANK={rank} is not below PMI_SIZE={size}")
        debug = bool(env.get("FLUX_PMI_DEBUG"))
        try:
            return cls(fd, rank, size, debug)
        except OSError as exc:
            raise PMIError(exc.errno or errno.EBADF,
                           f"PMI_FD={fd} is not a usable socket: {exc.strerror}") from None

    # ------------------------------------------------------------ wire
    def _trace(self, text: str) -> None:
        if self.debug:
            import sys

            print(f"pmi-simple[{self.rank}]: {text}", file=sys.stderr)

    def request(self, line: str, expect: str) -> dict[str, str]:
        data = (line + "\n").encode()
        if len(data) > MAX_REQUEST:
            raise PMIError(errno.E2BIG, f"PMI request longer than {MAX_REQUEST} bytes")
        self._trace(f"-> {line}")
        try:
            self.sock.sendall(data)  # one request, one write
            resp = self._readline()
        except OSError as exc:
            raise PMIError(exc.errno or errno.EIO, f"PMI server: {exc.strerror or exc}") from None
        self._trace(f"<- {resp}")
        fields = {}
        for word in resp.split():
            k, _, v = word.partition("=")
            fields[k] = v
        if fields.get("cmd") != expect:
            raise PMIError(errno.EPROTO, f"PMI server answered '{resp}' to '{line.split()[0]}'")
        return fields

    def _readline(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise PMIError(errno.ECONNRESET, "PMI server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    @staticmethod
    def _rc(fields: dict[str, str]) -> int:
        try:
            return int(fields.get("rc", "-1"))
        except ValueError:
            return -1

    # ------------------------------------------------------------ API
    def init(self) -> None:
        r = self.request("cmd=init pmi_version=1 pmi_subversion=1", "response_to_init")
        if self._rc(r) != 0:
            raise PMIError(errno.EPROTO, f"PMI init failed (rc={r.get('rc')})")
        r = self.request("cmd=get_maxes", "maxes")
        if self._rc(r) == 0:
            self.vallen_max = int(r.get("vallen_max", self.vallen_max))
            self.keylen_max = int(r.get("keylen_max", self.keylen_max))
        r = self.request("cmd=get_my_kvsname", "my_kvsname")
        if self._rc(r) != 0:
            raise PMIError(errno.EPROTO, "PMI get_my_kvsname failed")
        self.kvsname = r.get("kvsname", "")

    def put(self, key: str, value: str) -> None:
        if " " in value or "\n" in value or len(value) > self.vallen_max:
            raise PMIError(errno.EINVAL, f"PMI value for {key} has spaces or is too long")
        r = self.request(f"cmd=put kvsname={self.kvsname} key={key} value={value}", "put_result")
        if self._rc(r) != 0:
            raise PMIError(errno.EPROTO, f"PMI put {key} failed: {r.get('msg', r.get('rc'))}")

    def get(self, key: str) -> str | None:
        """The value, or None when the key does not exist (any non-zero rc)."""
        r = self.request(f"cmd=get kvsname={self.kvsname} key={key}", "get_result")
        if self._rc(r) != 0:
            return None
        return r.get("value", "")

    def barrier(self) -> None:
        r = self.request("cmd=barrier_in", "barrier_out")
        if self._rc(r) != 0:
            raise PMIError(errno.EPROTO, f"PMI barrier failed: {r.get('msg', r.get('rc'))}")

    def finalize(self) -> None:
        try:
            self.request("cmd=finalize", "finalize_ack")
        finally:
            self.close()

    def abort(self, code: int, msg: str = "") -> None:
        line = f"cmd=abort exitcode={code}"
        if msg:
            line += " msg=" + "_".join(msg.split())
        try:
            self.sock.sendall((line + "\n").encode()[:MAX_REQUEST])
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _clear_pmi_env() -> None:
    for k in [k for k in os.environ if k.startswith("PMI_")]:
        del os.environ[k]


class PMIBootstrap:
    """Rank, size and the overlay wiring from a PMI-1 server."""

    method = "simple"

    def __init__(self, attrs: dict[str, str], env: dict[str, str] | None = None):
        from flux.core.broker.boot.ipaddr import local_address

        t0 = time.monotonic()
        self.client = c = SimpleClient.from_env(env)
        c.init()
        self.rank, self.size = c.rank, c.size
        self.attrs: dict[str, str] = {"broker.boot-method": "simple"}
        self.curve: dict | None = None
        environ = os.environ if env is None else env
        self.hostname = (attrs.get("hostname") or environ.get("FLUX_FAKE_HOSTNAME")
                         or os.uname().nodename)
        if "hostname" not in attrs:
            self.attrs["hostname"] = self.hostname
        level = c.get("flux.instance-level")
        if level is not None and level.isdigit():
            self.attrs["instance-level"] = level
        jobid = _jobid_from_kvsname(c.kvsname)
        if jobid is not None:
            self.attrs["jobid"] = jobid
        mapping = c.get("PMI_process_mapping")
        one_node = _one_node(mapping, self.size)
        if mapping:
            try:
                from flux.core.job.taskmap import TaskMap

                self.attrs["broker.mapping"] = TaskMap.from_pmi(mapping).encode("json")
            except ValueError:
                pass  # a launcher's odd mapping only costs us the attribute
        prefer_tcp = attrs.get("tbon.prefertcp", "0") not in ("0", "")
        self.endpoint_template: str | None = None
        if self.size > 1 and "tbon.endpoint" not in attrs and (prefer_tcp or not one_node):
            hint = attrs.get("tbon.interface-hint") or os.environ.get("FLUX_IPADDR_INTERFACE")
            addr = local_address(hint)
            self.endpoint_template = f"tcp://{addr}:*"
            self.attrs["tbon.endpoint"] = self.endpoint_template
        if self.endpoint_template is not None:
            import zmq

            pub, sec = zmq.curve_keypair()
            # "allowed" is filled with the children's public keys by the exchange:
            # the overlay's ZAP handler admits those and no other
            self.curve = {"public": pub, "secret": sec, "allowed": set()}
        self.init_time = time.monotonic() - t0

    async def exchange(self, broker) -> None:
        """After the overlay bound its socket: publish it, learn the parent's.

        Deliberately blocking (as flux-core's bootstrap, before its reactor runs):
        until the children's keys are known, the ZAP requests of children that
        connect early must wait unanswered in the ZAP socket, not be refused."""
        self._exchange(broker)

    def _exchange(self, broker) -> None:
        from flux.core.util.hostlist import encode

        c = self.client
        rank, size = self.rank, self.size
        if size == 1:
            hosts = [self.hostname]
        else:
            uri = broker.attrs.get("tbon.endpoint") or "-"
            pub = self.curve["public"].decode() if self.curve else "-"
            # Z85 keys may hold '=' and other characters a PMI parser splits on: hex
            pubhex = _z85_to_hex(pub) if self.curve else "-"
            c.put(f"flux.bizcard.{rank}", f"{uri},{pubhex},{self.hostname}")
            c.barrier()
            hosts = []
            parent = broker.topo.parent(rank)
            for r in range(size):
                card = c.get(f"flux.bizcard.{r}")
                if card is None:
                    raise PMIError(errno.EPROTO, f"PMI: rank {r} published no business card")
                puri, phex, phost = (card.split(",", 2) + ["", ""])[:3]
                hosts.append(phost)
                if self.curve is not None and phex != "-" and broker.topo.parent(r) == rank:
                    self.curve["allowed"].add(_hex_to_z85(phex))
                if r == parent:
                    if puri == "-":
                        raise PMIError(errno.EPROTO, f"PMI: parent rank {r} has no endpoint")
                    broker.attrs.set("tbon.parent-endpoint", puri)
                    if self.curve is not None and phex != "-":
                        self.curve["server_public"] = _hex_to_z85(phex)
        broker.attrs.set("hostlist", encode(hosts))
        try:
            c.finalize()
        finally:
            _clear_pmi_env()


def _z85_to_hex(key: str) -> str:
    import zmq.utils.z85 as z85

    return z85.decode(key).hex()


def _hex_to_z85(text: str) -> bytes:
    import zmq.utils.z85 as z85

    return z85.encode(bytes.fromhex(text))


def _jobid_from_kvsname(name: str) -> str | None:
    """The enclosing job's id (F58) when the kvsname is a Flux job id."""
    if not name:
        return None
    try:
        from flux.core.job import fluid

        return fluid.encode_f58(fluid.decode_f58(name))
    except (ValueError, TypeError, AttributeError):
        return None


def _one_node(mapping: str | None, size: int) -> bool:
    if size == 1:
        return True
    if not mapping:
        return False
    try:
        from flux.core.job.taskmap import TaskMap

        return TaskMap.from_pmi(mapping).nnodes == 1
    except ValueError:
        return False
