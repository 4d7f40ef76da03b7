"""Command-line entry point (placeholder while the foundation lands)."""

def main() -> None:
    print("edgesec")
