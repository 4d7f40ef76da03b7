"""Device access: RADIUS MAC authentication, hostapd management, PSK-file backend."""
