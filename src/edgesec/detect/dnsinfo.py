"""What the DNS detectors need from one message: qtype, rcode, label shape (pure)."""

from __future__ import annotations

import math
from collections import Counter

QTYPE_TXT, QTYPE_NULL = 16, 10
RCODE_NXDOMAIN = 3


def first_qtype(msg: bytes) -> int | None:
    """QTYPE of the first question of a DNS message, or None when it does not parse."""
    pos = 12
    for _ in range(128):  # labels (no compression in a first question name)
        if pos >= len(msg):
            return None
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            pos += 2
            break
        pos += 1 + n
    else:
        return None
    if pos + 2 > len(msg):
        return None
    return msg[pos] << 8 | msg[pos + 1]


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def suspicious_name(qname: str, max_label: int, min_entropy: float) -> str:
    """Why a query name looks like tunnelled data ("" when it does not).

    Tunnels (iodine, dnscat2, DNSExfiltrator) encode payload in the labels
    under a domain they control: very long labels, or long labels of near
    random characters (base32/base64/hex).
    """
    labels = qname.rstrip(".").split(".")
    if len(labels) < 2:
        return ""
    payload = labels[:-2] or labels[:1]
    longest = max(payload, key=len)
    if len(longest) > max_label:
        return f"label of {len(longest)} characters"
    joined = "".join(payload)
    if len(joined) >= 24:
        ent = entropy(joined.lower())
        if ent >= min_entropy:
            return f"labels of entropy {ent:.2f} bits/char"
    return ""
