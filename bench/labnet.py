"""Set-up shared by the firewall benchmarks (firewall.py, groups.py, heal.py).

A routed lab (one device namespace per VLAN behind the gateway namespace,
forwarding on) and the SIGTERM handling that lets a killed run still remove
its namespaces.
"""

from __future__ import annotations

import os
import signal
import sys

from edgesec.lab.topology import LabDevice, Topology, run


def exit_on_sigterm() -> None:
    """A SIGTERM runs the clean-up (namespaces removed) in this process: exit 143.

    Forked helpers (pyroute2 creates namespaces in a child it terminates) keep
    the default action.
    """
    main_pid = os.getpid()

    def on_term(signum: int, _frame: object) -> None:
        if os.getpid() == main_pid:
            sys.exit(143)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)


def routed_devices(topo: Topology, vlans: dict[str, int]) -> dict[str, LabDevice]:
    """A device per name on its VLAN: 10.0.<vlan>.10/24 behind 10.0.<vlan>.1, routed."""
    lab = {name: topo.add_device(name, vlan) for name, vlan in vlans.items()}
    for name, dev in lab.items():
        gw = f"10.0.{vlans[name]}.1"
        run(topo.gateway, ["ip", "addr", "add", f"{gw}/24", "dev", dev.bridge])
        run(topo.gateway, ["ip", "link", "set", dev.bridge, "up"])
        topo.set_address(dev, f"10.0.{vlans[name]}.10/24", gw)
    run(topo.gateway, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    return lab
