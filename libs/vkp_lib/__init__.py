"""What every VKP service shares: the server runner, telemetry, logging, errors and id checks."""
