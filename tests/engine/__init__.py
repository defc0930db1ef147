"""Engine tier: real pushes against the Docker engine and a private nginx (each test marked `engine`)."""
