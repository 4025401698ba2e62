"""A stand-in for Docker's embedded DNS server (127.0.0.11) in the emulated compose network.

Run inside the nginx namespace: `python dnsstub.py HOSTS_FILE [ADDRESS]`. It answers A queries
for the names in HOSTS_FILE (read again on every query, so a test can stop a service or give it
a new address, as Docker does when a container stops or is recreated) and NXDOMAIN for anything
else, like Docker's resolver for a name that is not on the network. Prints "ready" once bound.
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

TTL_S = 600  # what Docker's resolver gives; nginx's `resolver … valid=` overrides it
QTYPE_A = 1
QCLASS_IN = 1


def read_hosts(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and "." in fields[0] and ":" not in fields[0]:
            for name in fields[1:]:
                names.setdefault(name.lower(), fields[0])
    return names


def reply(query: bytes, names: dict[str, str]) -> bytes:
    qid, flags, qdcount = struct.unpack(">HHH", query[:6])
    if qdcount != 1:
        raise ValueError("one question per query")
    labels, pos = [], 12
    while query[pos]:
        length = query[pos]
        labels.append(query[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    qtype, qclass = struct.unpack(">HH", query[pos + 1 : pos + 5])
    question = query[12 : pos + 5]
    address = names.get(".".join(labels).lower())
    # QR, the client's RD, RA; NXDOMAIN for names that are not on the network.
    out_flags = 0x8000 | (flags & 0x0100) | 0x0080 | (0 if address else 3)
    answers = b""
    if address and qtype == QTYPE_A and qclass == QCLASS_IN:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", QTYPE_A, QCLASS_IN, TTL_S, 4)
        answers += socket.inet_aton(address)
    count = 1 if answers else 0
    return struct.pack(">HHHHHH", qid, out_flags, 1, count, 0, 0) + question + answers


def main(hosts_file: str, address: str = "127.0.0.11") -> None:
    hosts = Path(hosts_file)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 53))
        print("ready", flush=True)
        while True:
            query, client = sock.recvfrom(512)
            try:
                sock.sendto(reply(query, read_hosts(hosts)), client)
            except (ValueError, IndexError, struct.error, OSError):
                continue  # a malformed query gets no answer, as from any resolver


if __name__ == "__main__":
    main(*sys.argv[1:])
