#!/usr/bin/env bash
# tenge's two front doors (see README.md):
#   ./tenge.sh demo   install what is missing, build, boot the QEMU guest and run pktgen
#                     against an emulated e1000e, printing live rates
#   ./tenge.sh test   every test: format and lint, host-side unit tests, 60 s of fuzzing
#                     (FUZZ_SECONDS per target), in-guest end-to-end tests against QEMU's
#                     NICs, then the benchmarks (BENCH lines)
# and two more:
#   ./tenge.sh bench  only the benchmarks, longer runs (DURATION=10 ROUNDS=5 by default;
#                     CASES=a,b to pick), raw BENCH lines kept in docs/benchmarks/
#   ./tenge.sh help
set -euo pipefail
cd "$(dirname "$0")"
export TENGE_ROOT="$PWD"
# Where cargo puts the binaries (CARGO_TARGET_DIR, as cargo reads it) and where the
# in-guest tests look for them.
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
export TENGE_BIN_DIR="${TENGE_BIN_DIR:-$bin}"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "tenge: the test guest needs root (9p export of / and vfio in the guest); run with sudo" >&2
        exit 1
    fi
}

setup() {
    need_root
    bash qemu/install-deps.sh
    echo "tenge: building (release)" >&2
    cargo build --release --workspace --bins
}

case "${1:-help}" in
demo)
    setup
    DURATION="${DURATION:-10}"
    exec "$bin"/testbed run --nic e1000e:hub0 --timeout $((DURATION + 120)) -- \
        "$bin/pktgen" 0000:00:03.0 --duration "$DURATION" --size 64
    ;;
test)
    setup
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # A failing step stops the run and says which it was, last, where a log's tail shows it.
    run() {
        echo "+ $*" >&2
        if ! "$@" 2>&1 | tee -a "$log"; then
            echo "tenge: FAILED: $*" >&2
            exit 1
        fi
    }
    run cargo fmt --all -- --check
    run cargo clippy --workspace --all-targets -- -D warnings
    # Host-side: unit tests, property tests, doc tests; the API docs build without a warning.
    run cargo test --workspace
    run env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
    # Host-side fuzzing (fuzz/, its own workspace): a device writing arbitrary used-ring
    # entries into the split and packed virtio rings and arbitrary advanced write-backs into
    # igb's RX ring, and arbitrary received frames into the software LRO engine, under
    # AddressSanitizer, from the committed seeds.
    # cargo-fuzz passes -Zsanitizer=address; RUSTC_BOOTSTRAP=1 lets the stable compiler
    # (which ships the ASan runtime) accept it. A crash fails the run.
    run cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    for t in used_ring used_ring_packed igb_rx lro; do
        mkdir -p "fuzz/corpus/$t" fuzz/artifacts
        echo "+ cargo fuzz run $t (${FUZZ_SECONDS:-30} s)" >&2
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
            -max_total_time="${FUZZ_SECONDS:-30}" -verbosity=0 -print_final_stats=1 \
            >"fuzz/artifacts/$t.log" 2>&1; then
            tail -n 40 "fuzz/artifacts/$t.log"
            echo "tenge: fuzz target $t failed: crash input in fuzz/artifacts/$t/, log in fuzz/artifacts/$t.log" >&2
            exit 1
        fi
        awk -v t="$t" '/^stat::number_of_executed_units/ {n = $2} /^stat::new_units_added/ {u = $2}
            END {print "fuzz " t ": " n " runs, " u " new inputs, no crash"}' \
            "fuzz/artifacts/$t.log" | tee -a "$log"
    done
    # In-guest: every #[ignore = "boots a QEMU guest"] test, one guest at a time (2 cores).
    # A failing test binary does not stop the others: the run ends failed with every
    # failure in its log, not only the first binary's.
    run cargo test --workspace --no-fail-fast -- --ignored --test-threads 1
    # Benchmarks: instructions per packet (callgrind), then tenge vs testpmd in the guest.
    run "$bin"/engine-ipp
    # Short versions of the e1000e cases and the vhost-user 64-byte cases (five alternating
    # rounds each); ./tenge.sh bench runs every case, longer.
    run "$bin"/tenge-bench --duration "${DURATION:-3}" --rounds "${ROUNDS:-5}" \
        --cases e1000e-tx64,e1000e-rx64,vhost-tx64,vhost-rx64,vhost-packed-tx64,vhost-packed-rx64
    passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
    failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
    echo "tenge: $passed passed, $failed failed"
    [ "$failed" = 0 ]
    ;;
bench)
    setup
    # The raw lines of every run are kept: docs/benchmarks/<date>-<commit>.txt, the machine
    # and the commit first.
    mkdir -p docs/benchmarks
    raw="docs/benchmarks/$(date -u +%Y-%m-%dT%H%M)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit).txt"
    {
        echo "# tenge benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "# commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(qemu-system-x86_64 --version | head -1), $(uname -r) host kernel"
        echo "# ./tenge.sh bench: DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-5} CASES=${CASES:-default}"
    } > "$raw"
    "$bin"/engine-ipp | tee -a "$raw"
    "$bin"/tenge-bench --duration "${DURATION:-10}" --rounds "${ROUNDS:-5}" \
        ${CASES:+--cases "$CASES"} | tee -a "$raw"
    echo "tenge: raw figures in $raw" >&2
    ;;
help|-h|--help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    ;;
*)
    echo "tenge: unknown command '$1'; try ./tenge.sh help" >&2
    exit 2
    ;;
esac
