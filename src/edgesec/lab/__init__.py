"""Network-namespace lab: the test bed (``topology``) and its helper services."""
