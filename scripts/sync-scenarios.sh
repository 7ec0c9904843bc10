#!/usr/bin/env bash
# Issue 19's scenarios, N runs each: 200 connections through the VIP held over a
# crash, a SIGTERM of vrrpd and its restart, a drill out and back (twice), maintenance
# on and off, a fail-back after lb1's reboot, lbd crashing alone on either node and a
# takeover with 100,000 other synced entries, and the no-sync controls. Prints, per
# moment of each scenario, the connections that answered in every run, and which
# scenarios failed in which run. Needs root. Usage: scripts/sync-scenarios.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "sync-scenarios: needs root (network namespaces)" >&2; exit 1; }
scripts/deps.sh >/dev/null
cargo build --release -q -p vrrpd -p lbd --bins
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
test_cmd=(cargo test --release -q -p lbd --test sync_scenarios --)
mapfile -t tests < <("${test_cmd[@]}" --list 2>/dev/null | sed -n 's/: test$//p')
[ "${#tests[@]}" -gt 0 ] || { echo "sync-scenarios: no tests listed" >&2; exit 1; }
failed=0
for r in $(seq 1 "$runs"); do
    echo "== run $r of $runs"
    for t in "${tests[@]}"; do
        # One scenario at a time, each in a lab of its own.
        if "${test_cmd[@]}" --exact "$t" --nocapture >"$out/$r.$t.txt" 2>&1; then
            verdict=ok
        else
            verdict="FAILED (output kept in target/sync-scenarios/$r.$t.txt)"
            failed=$((failed + 1))
            mkdir -p target/sync-scenarios
            cp "$out/$r.$t.txt" target/sync-scenarios/
        fi
        printf '   %-70s %s\n' "$t" "$verdict"
    done
done
echo
echo "== connections that answered, per run (scenario: moment)"
for t in "${tests[@]}"; do
    # The moments in the order the scenario prints them, each with its runs' counts.
    for r in $(seq 1 "$runs"); do
        sed -nE 's#^(.*): ([0-9]+/[0-9]+) connections answer$#\1\t\2#p' "$out/$r.$t.txt" |
            awk -F'\t' -v run="$r" '{ print run "\t" NR "\t" $1 "\t" $2 }'
    done | sort -t$'\t' -k2,2n -k1,1n | awk -F'\t' -v test="$t" '
        { if (!($2 in what)) { what[$2] = $3; order[++k] = $2 }
          cell[$2] = cell[$2] (cell[$2] == "" ? "" : "  ") $4 }
        END { for (i = 1; i <= k; i++)
                  printf "  %-60s %-40s %s\n", test, what[order[i]], cell[order[i]] }'
done
echo
echo "failed scenario runs: $failed of $((runs * ${#tests[@]}))"
[ "$failed" = 0 ]
