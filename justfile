# sluice's everyday commands. `just --list` shows them.

# Run the pipeline against the built-in demo API with the bundled plugins.
run *FLAGS:
    cargo run --release -- run {{FLAGS}}

# Run every test (the same command CI runs).
test:
    cargo test --workspace

# Format, lint and test, as CI does.
ci:
    bash .ci/run

# Show a running host's components and plugins.
status ADMIN="127.0.0.1:9480":
    curl -s http://{{ADMIN}}/components; echo; curl -s http://{{ADMIN}}/plugins; echo
