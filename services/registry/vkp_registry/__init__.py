"""The registry service of the VKP hub."""
