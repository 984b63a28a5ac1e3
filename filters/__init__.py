"""Message filters. The filter interface arrives with the filter-chain issue."""
