"""Public test helpers: run a service or a whole daemon on OS-chosen ports
with a readiness signal (never a sleep), and stop exactly what was started."""
