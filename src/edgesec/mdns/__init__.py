"""mDNS reflector, name knowledge and safe automatic bridging."""
