"""DHCP: dnsmasq configuration and process (dnsmasq), and its lease hook (hook)."""
