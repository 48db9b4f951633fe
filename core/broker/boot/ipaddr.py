"""Which local IP address a broker publishes for its tcp:// overlay endpoint.

In order: the IPv4 address of the interface named by the hint (tbon.interface-hint
or FLUX_IPADDR_INTERFACE; `default-route` means the next rule), that of the
interface holding the default route, the address the host name resolves to
(FLUX_IPADDR_HOSTNAME set, or as a fallback), then 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

SIOCGIFADDR = 0x8915


def interface_address(name: str) -> str | None:
    """The IPv4 address of interface `name`, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("256s", name[:15].encode())
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)
        return socket.inet_ntoa(res[20:24])
    except OSError:
        return None
    finally:
        s.close()


def default_route_interface() -> str | None:
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except (OSError, StopIteration):
        pass
    return None


def _hostname_address() -> str | None:
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return addr


def local_address(hint: str | None = None) -> str:
    if os.environ.get("FLUX_IPADDR_HOSTNAME"):
        addr = _hostname_address()
        if addr:
            return addr
    if hint and hint != "default-route":
        if hint[0].isdigit():  # already an address
            return hint
        addr = interface_address(hint)
        if addr:
            return addr
    iface = default_route_interface()
    if iface:
        addr = interface_address(iface)
        if addr:
            return addr
    return _hostname_address() or "127.0.0.1"
