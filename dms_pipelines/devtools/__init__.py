"""Developer tools, never imported by the product: sample generator, API simulator, sshd harness, demo, benchmarks."""
