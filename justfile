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

# Micro-benchmarks (criterion): decode, batch, plugin calls wasm vs native, trap recovery.
bench *ARGS:
    cargo bench -p sluice --bench micro -- {{ARGS}}

# The load benchmark: the real pipeline at full load, wasm then native, and their ratio.
bench-load *ARGS:
    cargo run --release -p sluice --example load -- {{ARGS}}

# How cost grows with entries per response, plugins loaded and CPU-array length.
bench-sweep *ARGS:
    cargo run --release -p sluice --example load -- --sweep {{ARGS}}

# Time from `sluice run` to ready, with the compiled plugins cached.
bench-startup RUNS="20":
    cargo build --release -p sluice
    bash host/benches/startup.sh {{RUNS}}

# What a plugin costs by language: the example plugins (built first) next to native Rust.
bench-langs:
    plugins/examples/build.sh target/examples
    cargo build --release -p sluice-plugin-disk-usage --target wasm32-wasip2 --target-dir target/wasm
    cargo run --release -p sluice --example plugin_costs -- \
        rust=target/wasm/wasm32-wasip2/release/sluice_plugin_disk_usage.wasm \
        python=target/examples/python/disk_usage.wasm \
        js=target/examples/js/disk_usage.wasm \
        c=target/examples/c/disk_usage.wasm
