"""One-off measurements behind the benchmark's findings; not run by ``make bench``."""
