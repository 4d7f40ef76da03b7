"""The supervisor: control protocol, command handlers and sockets."""
