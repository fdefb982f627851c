"""nixlookup.bench: the benchmark harness that guards the lookup core and compares it with alternatives."""
