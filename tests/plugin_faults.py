"""Fixtures of the fault matrix (tests/test_fault_matrix.py): real processes, injected faults."""
