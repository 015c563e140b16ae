#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after the other, each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60 (what CI runs); a long run is e.g. `scripts/fuzz.sh 900`
# (4 targets x 15 min = 1 h). TARGETs default to every target. Each target starts from the
# committed seeds (fuzz/seeds/<target>) plus the working corpus a previous run left in
# fuzz/corpus/<target> (not tracked), and writes what it finds into fuzz/artifacts/<target>/.
# A finding (crash, panic, failed assertion, input slower than FUZZ_TIMEOUT seconds, or more
# memory than FUZZ_RSS_MB) fails the script: turn it into a fixture or a test, then fix it.
#
# Prints one summary line per target and writes them to fuzz/artifacts/summary.txt.
# Needs scripts/install-fuzz.sh (nightly + cargo-fuzz).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    TARGETS=(config decide fixture policy_file)
fi
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-2048}"

log() { echo "fuzz: $*" >&2; }

# Built once, up front, and then run directly: `cargo fuzz run` would rebuild each target
# from whatever the sources are when its turn comes.
log "building ${TARGETS[*]}"
cargo +nightly fuzz build >&2
BIN="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
mkdir -p artifacts
summary=artifacts/summary.txt
: >"$summary"
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    log "$t: ${SECONDS_PER_TARGET}s"
    start=$(date +%s)
    logfile="artifacts/$t/run.log"
    # -max_len bounds one input (the largest seed is below it); -timeout flags a hang;
    # -rss_limit_mb flags runaway memory. Output goes to a log; the tail is shown on failure.
    if "$BIN/$t" "corpus/$t" "seeds/$t" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$FUZZ_TIMEOUT" \
        -rss_limit_mb="$FUZZ_RSS_MB" -max_len=262144 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$logfile" 2>&1; then
        result=ok
    else
        result="FINDING (see fuzz/$logfile and fuzz/artifacts/$t/)"
        status=1
        tail -40 "$logfile" >&2
    fi
    elapsed=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    line="$t: ${elapsed}s, ${runs:-?} executions, corpus ${corpus} inputs (+$(find "seeds/$t" -type f | wc -l) seeds), $result"
    echo "$line" | tee -a "$summary"
done
exit "$status"
