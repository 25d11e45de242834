#!/usr/bin/env bash
# Runs raftsman's fuzz targets (fuzz/targets.rs) under cargo-fuzz and libFuzzer, on the stable toolchain.
#   deploy/fuzz.sh [TARGET|all] [SECONDS]     fuzz one target, or each in turn, for SECONDS each (default 300)
#   deploy/fuzz.sh TARGET FILE                replay one input (a crash) against TARGET
#   deploy/fuzz.sh all 0                      build only
#   deploy/fuzz.sh list                       name the targets
# Installs cargo-fuzz when it is missing. Builds in ~/.cache/raftsman-fuzz-target. The targets never call
# RocksDB, but raftsman links it: the script links the archive the main build made (`deploy/dev.sh` or any
# release build), since compiling RocksDB's C++ again with the sanitizer takes over half an hour on two cores;
# without that archive it is compiled. The corpus a run grows and the crashes it finds go to
# ~/.cache/raftsman-fuzz/<target>/; the seeds in fuzz/corpus/<target>/ are only read. Each run ends with
# libFuzzer's summary (executions, coverage, features); a crash stops the run, and `cargo fuzz tmin`
# minimizes it (README, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${RAFTSMAN_FUZZ_TARGET_DIR:-$HOME/.cache/raftsman-fuzz-target}"
# cargo-fuzz passes nightly-only flags (sanitizers, coverage); the stable compiler takes them with this.
export RUSTC_BOOTSTRAP=1
work="${RAFTSMAN_FUZZ_WORK_DIR:-$HOME/.cache/raftsman-fuzz}"
main_target="${CARGO_MAIN_TARGET_DIR:-$HOME/.cache/raftsman-target}"
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
  archive=$(ls -t "$main_target"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
  if [ -n "$archive" ]; then
    mkdir -p "$work/rocksdb"
    [ "$work/rocksdb/librocksdb.a" -nt "$archive" ] || cp "$archive" "$work/rocksdb/librocksdb.a"
    export ROCKSDB_LIB_DIR="$work/rocksdb" ROCKSDB_STATIC=1
  fi
fi

command -v cargo >/dev/null 2>&1 || { echo "raftsman needs the Rust toolchain (https://rustup.rs)" >&2; exit 1; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^raftsman-fuzz$')
target="${1:-all}"
if [ "$target" = list ]; then echo "$targets"; exit 0; fi
if [ "$target" != all ] && ! grep -qx "$target" <<<"$targets"; then
  echo "usage: deploy/fuzz.sh [all|list|TARGET] [SECONDS|FILE]; targets: $(echo $targets)" >&2
  exit 2
fi

# -a: overflow checks and debug assertions on, so that arithmetic on hostile numbers panics instead of wrapping.
cargo fuzz build --fuzz-dir fuzz -a
# The binaries run directly (not through `cargo fuzz run`, which rebuilds whenever the checkout changed).
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"

if [ "$target" != all ] && [ -f "${2:-}" ]; then
  exec "$bin/$target" "$2"
fi

seconds="${2:-300}"
[ "$seconds" = 0 ] && exit 0 # build only
[ "$target" = all ] && run=($targets) || run=("$target")
for name in "${run[@]}"; do
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  echo "fuzzing $name for ${seconds}s (corpus $work/$name/corpus, crashes $work/$name/artifacts)" >&2
  # New inputs go to the first corpus directory; the seeds are read from the second. 4 KiB inputs at most,
  # 2 GiB of memory (one allocation above it counts as a crash), 10 s per input.
  "$bin/$name" "$work/$name/corpus" "fuzz/corpus/$name" -max_total_time="$seconds" -max_len=4096 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -artifact_prefix="$work/$name/artifacts/" \
    -print_final_stats=1
done
