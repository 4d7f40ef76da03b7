"""Network isolation: subnet bridges (links), the pure nftables policy and the firewall."""
