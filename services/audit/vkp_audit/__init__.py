"""The audit service of the VKP hub."""
