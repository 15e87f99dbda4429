#!/usr/bin/env bash
# stshard on a simulated three-host cluster (cluster.sh), checked against the
# same runs on this one host.
#
#   cluster-test.sh tools STSHARD WORK MPIEXEC [preflags...]
#   cluster-test.sh kill  STSHARD WORK MPIEXEC [preflags...]
#
# Both start the cluster themselves (cluster.sh --hosts 3; status 77, a CTest
# skip, where network namespaces cannot be made).  Ranks fill the hosts two
# at a time, so 4 ranks span two hosts and 6 ranks three.
#
# tools: save (4 ranks), consolidate (6), load --check-seed (6), reshard (6),
#   save --direct (4) and save --consolidate (4) on the cluster, every output
#   byte-identical (cmp) to the same command with the same rank count run by
#   MPIEXEC on this host; the direct and one-call saves also equal the
#   consolidation.  The ranks are checked to sit two a host, and the MPI
#   traffic to have crossed the second host's interface (the tensor data does
#   not: it goes through the shared file system).
# kill: a consolidate on 6 ranks whose rank 3 (on the second host) is held by
#   the fault switch after its first data write and then SIGKILLed from here:
#   mpirun must fail within a bound, no final-named output may exist, and
#   within a bounded wait no process may be left on any host (the namespaces
#   hold nothing: no stshard, no orted); a rerun then succeeds and equals one
#   host's.  Needs a STS_FAULT_INJECTION build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=$1 stshard=$2 work=$3 mpiexec=$4
shift 4
pre=("$@")
seed=11
model=llama:4MiB
limit=${STS_CLUSTER_TIMEOUT:-90}

if [ -z "${STS_CLUSTER_DIR:-}" ]; then
    exec "$here/cluster.sh" --hosts 3 -- "$0" "$mode" "$stshard" "$work" "$mpiexec" "$@"
fi
read -r -a hosts <<<"$STS_CLUSTER_HOSTS"
rm -rf "$work"
mkdir -p "$work/one" "$work/cl"
cd "$work"

fail() {
    echo "cluster-test: FAIL: $*" >&2
    exit 1
}
# Runs one tool command on this host in one/ or on the cluster in cl/, so
# the same relative paths name each run's own files.
one() { # NP ARGS...
    local n=$1
    shift
    echo "+ [one host] $n ranks: stshard $*" >&2
    (cd one && timeout -k 5 "$limit" "$mpiexec" -n "$n" "${pre[@]}" "$stshard" "$@")
}
cl() { # NP ARGS...
    local n=$1
    shift
    echo "+ [cluster] $n ranks: stshard $*" >&2
    (cd cl && timeout -k 5 "$limit" "$STS_CLUSTER_MPIRUN" -n "$n" "$stshard" "$@")
}
both() { # NP ARGS...: the same command on this host and on the cluster
    one "$@" >"one.out" 2>&1 || { cat one.out >&2; fail "on one host: stshard $*"; }
    cl "$@" >"cl.out" 2>&1 || { cat cl.out >&2; fail "on the cluster: stshard $*"; }
    cat cl.out
}
# Every file of A equals the file of the same name in B, and B has no others.
same() { # A B
    local a=$1 b=$2 f n=0
    [ "$(cd "$a" && ls)" = "$(cd "$b" && ls)" ] || fail "$a and $b hold different files"
    for f in "$a"/*; do
        cmp "$f" "$b/$(basename "$f")" || fail "$f differs from $b/$(basename "$f")"
        n=$((n + 1))
    done
    [ $n -ge 1 ] || fail "$a is empty"
    echo "cluster-test: $a = $b ($n files)" >&2
}
rx_tx() { # HOST: bytes its eth0 received plus sent
    ip -n "$1" -s -j link show eth0 | python3 -c \
        'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["rx"]["bytes"]+s["tx"]["bytes"])'
}

# Ranks land two a host, in host order, and see their host's name.
"$STS_CLUSTER_MPIRUN" -n 6 hostname >hosts.out 2>&1 || { cat hosts.out >&2; fail "mpirun hostname"; }
want=$(printf '%s\n' "${hosts[0]}" "${hosts[0]}" "${hosts[1]}" "${hosts[1]}" "${hosts[2]}" "${hosts[2]}")
[ "$(sort hosts.out)" = "$want" ] || { cat hosts.out >&2; fail "ranks are not two a host"; }

case $mode in
tools)
    before=$(rx_tx "${hosts[1]}")
    both 4 save ranks --model $model --seed $seed
    same one/ranks cl/ranks
    both 6 consolidate ranks hf
    same one/hf cl/hf
    both 6 load hf --check-seed $seed >load.out
    cat load.out
    grep -Eq "elements compared, 0 differ" load.out || fail "load --check-seed found differences"
    both 6 reshard hf resharded --strategy row
    same one/resharded cl/resharded
    both 4 save direct --model $model --seed $seed --direct
    same one/direct cl/direct
    same cl/hf cl/direct
    both 4 save onecall-ranks --model $model --seed $seed --consolidate onecall
    same one/onecall cl/onecall
    same cl/hf cl/onecall
    [ ! -e cl/onecall-ranks ] || [ -z "$(ls cl/onecall-ranks)" ] || fail "the one-call save left rank files"
    moved=$(($(rx_tx "${hosts[1]}") - before))
    echo "cluster-test: ${hosts[1]} eth0 carried $moved bytes" >&2
    [ $moved -gt 65536 ] || fail "only $moved bytes crossed ${hosts[1]}'s interface"
    echo "cluster-test: tools ok"
    ;;
kill)
    one 4 save ranks --model $model --seed $seed >/dev/null 2>&1 || fail "save on one host"
    rm -f held
    set +e
    STSHARD_FAULT="point=write,rank=3,hit=1,action=pause,mark=$work/held,wait=$work/never" \
        "$STS_CLUSTER_MPIRUN" -x STSHARD_FAULT -n 6 "$stshard" consolidate \
        "$work/one/ranks" "$work/cl/out" --buffer-size 64KiB >kill.out 2>&1 &
    job=$!
    set -e
    for _ in $(seq 600); do [ -f held ] && break; sleep 0.05; done
    [ -f held ] || { kill $job; cat kill.out >&2; fail "rank 3 was never held by the fault switch"; }
    # Rank 3's process, found among the second host's processes.
    victim=
    for p in $(ip netns pids "${hosts[1]}"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = stshard ] || continue
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=3 && victim=$p
    done
    [ -n "$victim" ] || { kill $job; fail "no rank 3 among ${hosts[1]}'s processes"; }
    echo "cluster-test: SIGKILL to rank 3, pid $victim on ${hosts[1]}" >&2
    kill -9 "$victim"
    t0=$SECONDS
    rc=0
    wait $job || rc=$?
    cat kill.out
    echo "cluster-test: mpirun exited $rc after $((SECONDS - t0)) s" >&2
    [ $rc -ne 0 ] || fail "mpirun exited 0 although a rank was killed"
    [ $rc -ne 124 ] || fail "mpirun hung after the kill (timeout)"
    finals=$(find cl/out -maxdepth 1 -name 'model*' 2>/dev/null || true)
    [ -z "$finals" ] || fail "final-named output after the kill: $finals"
    # Nothing may stay behind on any host.
    left=
    for _ in $(seq 100); do
        left=
        for h in "${hosts[@]}"; do
            for p in $(ip netns pids "$h"); do
                left+=" $h:$p:$(cat "/proc/$p/comm" 2>/dev/null || echo gone)"
            done
        done
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] || fail "processes left on the hosts 10 s after mpirun ended:$left"
    # What the killed run left does not stand in the way of a rerun, whose
    # output equals one host's.
    cl 6 consolidate ../one/ranks out >rerun.out 2>&1 || { cat rerun.out >&2; fail "the rerun failed"; }
    one 6 consolidate ranks out >/dev/null 2>&1 || fail "consolidate on one host"
    same one/out cl/out
    echo "cluster-test: kill ok (nothing published, no process left on ${hosts[*]}, rerun equal)"
    ;;
*)
    fail "unknown mode $mode"
    ;;
esac
