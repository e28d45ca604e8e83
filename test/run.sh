#!/usr/bin/env bash
# test/run.sh: install what is missing, build, run every test, print 'N passed, N failed'.
#   bash test/run.sh              gcc build in build/, warnings are errors, all suites
#   bash test/run.sh --sanitize   clang + ASan/UBSan build in build-asan/, libFuzzer targets included,
#                                 all suites but 'long' (fault-timing scenarios left to the other passes)
#   bash test/run.sh --tsan       clang + ThreadSanitizer build in build-tsan/, the cluster scenarios of suite tsan
#                                 (skfused's threads under TSan; the first race stops it and fails the test)
# Environment: SK_SUITES="unit fuzz ..." limits the suites; SK_BUILD_DIR overrides the build folder.
set -uo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$src"

sanitize=0
case "${1:-}" in
    --sanitize) sanitize=1 ;;
    --tsan) sanitize=2 ;;
    "") ;;
    *) echo "test/run.sh: unknown option '$1' (use --sanitize, --tsan or nothing)" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "test/run.sh: the tests mount FUSE, load XDP and create network namespaces: run as root" >&2
    exit 2
fi
bash test/deps.sh || exit 1

if [ $sanitize = 2 ]; then
    bdir=${SK_BUILD_DIR:-$src/build-tsan}
    [ -d "$bdir" ] || CC=clang meson setup "$bdir" --werror -Db_sanitize=thread \
        -Db_lundef=false || exit 1
    # every report also lands in a file, so a race in a daemon whose test passed anyway still fails the run
    rm -rf "$bdir/tsan-reports" && mkdir -p "$bdir/tsan-reports"
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$src/test/tsan.supp:log_path=$bdir/tsan-reports/report}
    tsan_only=${SK_SUITES:-yes}; [ "$tsan_only" = yes ] || tsan_only=no
    SK_SUITES=${SK_SUITES:-tsan}
elif [ $sanitize = 1 ]; then
    bdir=${SK_BUILD_DIR:-$src/build-asan}
    [ -d "$bdir" ] || CC=clang meson setup "$bdir" --werror -Db_sanitize=address,undefined \
        -Db_lundef=false -Dfuzz=true || exit 1
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    # pass 1 walks 1 000 000 files; under ASan a fifth of that covers the same code in a fifth of the time
    export SK_SCALE_FILES=${SK_SCALE_FILES:-200000}
else
    bdir=${SK_BUILD_DIR:-$src/build}
    [ -d "$bdir" ] || meson setup "$bdir" --werror || exit 1
fi
rebuild=()
if [ $sanitize = 2 ] && [ "$tsan_only" = yes ]; then
    # the tsan scenarios run skfused and the helpers of test/tools only: the rest of the tree
    # (agent, XDP, unit tests) would double this pass's build time for nothing it runs
    ninja -C "$bdir" fused/skfused test/tools/ackwriter test/tools/frameforge test/tools/evilprimary \
        test/tools/evilsecondary test/tools/derivekey || exit 1
    rebuild=(--no-rebuild)
else
    ninja -C "$bdir" || exit 1
fi

suites=()
for s in ${SK_SUITES:-}; do suites+=(--suite "$s"); done
# the ASan pass leaves the long fault-timing scenarios (suite long) to the gcc and TSan passes
[ $sanitize = 1 ] && [ -z "${SK_SUITES:-}" ] && suites+=(--no-suite long)
# Mount points, namespaces and XDP programs are real: the tests clean up after themselves.
meson test -C "$bdir" "${rebuild[@]}" --print-errorlogs --num-processes 2 "${suites[@]}"
rc=0
python3 test/summary.py --out "$bdir/sk-summary" "$bdir/meson-logs/testlog.json" || rc=1
if [ $sanitize = 2 ]; then
    mapfile -t reports < <(find "$bdir/tsan-reports" -type f 2>/dev/null)
    if [ ${#reports[@]} -gt 0 ]; then
        echo "ThreadSanitizer: ${#reports[@]} report(s), each counted as a failure:"
        grep -h 'SUMMARY' "${reports[@]}" | sort | uniq -c
        read -r p fl sk < "$bdir/sk-summary"
        echo "$p $((fl + ${#reports[@]})) ${sk:-0}" > "$bdir/sk-summary"
        echo "$p passed, $((fl + ${#reports[@]})) failed"
        rc=1
    fi
fi
exit $rc
