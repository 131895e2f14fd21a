"""Running the gateway as a service: headless runner, control socket, systemd, logging."""
