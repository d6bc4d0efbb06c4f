#!/usr/bin/env bash
# tenge's two front doors (see README.md):
#   ./tenge.sh demo   install what is missing, build, boot the QEMU guest and run pktgen
#                     against an emulated e1000e, printing live rates
#   ./tenge.sh test   every test: format and lint, host-side unit tests, in-guest end-to-end
#                     tests against QEMU's NICs, then the benchmarks (BENCH lines)
# and two more:
#   ./tenge.sh bench  only the benchmarks, longer runs (DURATION=10 ROUNDS=3 by default)
#   ./tenge.sh help
set -euo pipefail
cd "$(dirname "$0")"
export TENGE_ROOT="$PWD"

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
    exec ./target/release/testbed run --nic e1000e:hub0 --timeout $((DURATION + 120)) -- \
        "$PWD/target/release/pktgen" 0000:00:03.0 --duration "$DURATION" --size 64
    ;;
test)
    setup
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    run() { echo "+ $*" >&2; "$@" 2>&1 | tee -a "$log"; }
    run cargo fmt --all -- --check
    run cargo clippy --workspace --all-targets -- -D warnings
    # Host-side: unit tests, property tests, doc tests.
    run cargo test --workspace
    # In-guest: every #[ignore = "boots a QEMU guest"] test, one guest at a time (2 cores).
    run cargo test --workspace -- --ignored --test-threads 1
    # Benchmarks: instructions per packet (callgrind), then tenge vs testpmd in the guest.
    run ./target/release/engine-ipp
    # The e1000e cases (issue 3's figures); ./tenge.sh bench runs every case, virtio too.
    run ./target/release/tenge-bench --duration "${DURATION:-5}" --rounds "${ROUNDS:-1}" \
        --cases e1000e-tx64,e1000e-rx64
    passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
    failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
    echo "tenge: $passed passed, $failed failed"
    [ "$failed" = 0 ]
    ;;
bench)
    setup
    ./target/release/engine-ipp
    ./target/release/tenge-bench --duration "${DURATION:-10}" --rounds "${ROUNDS:-3}"
    ;;
help|-h|--help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    ;;
*)
    echo "tenge: unknown command '$1'; try ./tenge.sh help" >&2
    exit 2
    ;;
esac
