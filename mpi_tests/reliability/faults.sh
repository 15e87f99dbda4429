#!/usr/bin/env bash
# faults.sh - fault and safety scenarios for `stshard consolidate`, each run
# with real MPI ranks on real files (docs/reliability.md lists what each
# proves).
#
#   faults.sh SCENARIO --stshard EXE --gen GEN_MANY --work DIR [--np N]
#             [--mpiexec EXE] [-- LAUNCHER FLAGS...]
#
# Scenarios:
#   kill_switch_rank0 / kill_switch_rank1
#                    the fault switch SIGKILLs one rank on its 3rd data write
#   kill_external    a watcher SIGKILLs rank 1 from outside once the first
#                    temporary output file exists
#   full_disk        the output directory is a 1 MiB tmpfs
#   readonly         the output directory is a read-only tmpfs
#   missing_indir    the input directory does not exist
#   vanished_input   a rank file is deleted while the ranks are held after
#                    the listing
#   unreadable       a rank file is mode 000 and the job runs as nobody
#   fifo_input       a FIFO named like a rank file (must not hang)
#   dir_input        a directory named like a rank file
#   reshard_fifo_input / reshard_dir_input
#                    the same two for `stshard reshard`
#   shrunk_input     a rank file is truncated after the headers were read
#   grown_input      a rank file grows after the headers were read
#   save_full_disk   `stshard save` into a 1 MiB tmpfs: refused before writing
#   one_rank_fails   the fault switch fails rank 1's writes (IoError)
#   exists_no_force  a valid output exists: refused without --force, replaced
#                    with it
#   same_dir         OUTDIR is INDIR, directly and through a symlink
#   force_publish_fails
#                    --force over an existing output, with the fault switch
#                    failing each rename of the publish step in turn: the
#                    earlier output must be back, byte for byte, every time
# Exit status 0: the scenario behaved; 77: the scenario cannot run here
# (skipped: no root for mounts, no setpriv); else a failure.
set -u
scenario=$1
shift
exe="" gen="" work="" np=2 mpiexec=mpiexec limit=120
while [ $# -gt 0 ]; do
    case $1 in
    --stshard) exe=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --mpiexec) mpiexec=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "faults.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
flags=("$@")
here=$(cd "$(dirname "$0")" && pwd)
work="$work/$scenario"
in="$work/in" out="$work/out" st="$work/status" log="$work/log"
mnt=""
failures=0

cleanup() {
    [ -n "$mnt" ] && mountpoint -q "$mnt" && umount "$mnt"
    true
}
trap cleanup EXIT

fail() {
    echo "FAIL $scenario: $*"
    failures=$((failures + 1))
}
skip() {
    echo "SKIP $scenario: $*"
    exit 77
}

# Input: P rank files of T tensors (row and strided column blocks, mixed dtypes).
P=4 T=3000
make_input() { # [tensors]
    T=${1:-$T}
    rm -rf "$work"
    mkdir -p "$work" "$st"
    "$gen" --write "$in" --ranks $P --tensors "$T" >/dev/null || { echo "generator failed"; exit 1; }
}

# Runs consolidate on np ranks; the status of every rank lands in $st.  By
# default every rank runs to its own end (Open MPI's launcher does not abort
# the job when one rank exits non-zero, so each rank's status is its own;
# the launcher then exits 0 and run() returns rank 0's status).  ABORT=1
# keeps the launcher's default abort, for the kill scenarios, where the
# launcher itself must notice the death and end the job.
consolidate() { # extra args...
    rm -f "$st"/rank.* "$st"/pid.* "$work/hung"
    local abort=0 s t0=$SECONDS
    [ "${ABORT:-0}" = 1 ] && abort=1
    OMPI_MCA_orte_abort_on_non_zero_status=$abort STSHARD_FAULT=${FAULT:-} \
        timeout -k 10 "$limit" ${RUNAS:-} "$mpiexec" -n "$np" "${flags[@]}" \
        "$here/rankwrap.sh" "$st" "$exe" "${TOOL:-consolidate}" "$@" >"$log" 2>&1 </dev/null
    s=$?
    # timeout's own statuses (124, 137) are also what a killed job returns: go by the clock.
    [ $((SECONDS - t0)) -ge "$limit" ] && touch "$work/hung"
    if [ $abort = 0 ] && [ $s -eq 0 ] && [ -f "$st/rank.0" ]; then
        s=$(cat "$st/rank.0")
    fi
    return "$s"
}

show_log() { sed 's/^/    | /' "$log" | head -30; }

# Final-named outputs (what a user would load).
finals() { # dir
    [ -d "$1" ] && find "$1" -maxdepth 1 \( -name 'model*.safetensors' -o \
        -name 'model.safetensors.index.json' \) -printf '%f ' 2>/dev/null
}
partials() { # dir
    [ -d "$1" ] && find "$1" -maxdepth 1 -name '*.stshard-partial' -printf '%f ' 2>/dev/null
}

# Every rank exited `want`.
all_ranks() { # want
    local r s
    for ((r = 0; r < np; r++)); do
        s=$(cat "$st/rank.$r" 2>/dev/null) || return 1
        [ "$s" = "$1" ] || return 1
    done
}

# A failed run: launcher and every rank exit `status`, the output names the
# error, no final-named file exists, and no temporary file is left behind.
expect_failure() { # launcher-status status name-regex outdir
    local got=$1
    if [ -f "$work/hung" ]; then
        fail "hang: not finished within $limit s"
        show_log
        return
    fi
    [ "$got" -eq "$2" ] || { fail "launcher exit $got, expected $2"; show_log; }
    all_ranks "$2" || { fail "not every rank exited $2: $(grep -H . "$st"/rank.* | tr '\n' ' ')"; }
    grep -Eq "$3" "$log" || { fail "output does not match $3"; show_log; }
    [ -z "$(finals "$4")" ] || fail "final-named output exists after a failure: $(finals "$4")"
    [ -z "$(partials "$4")" ] || fail "temporary files left behind: $(partials "$4")"
}

# A successful run whose output is complete, exact and valid.
expect_success() { # launcher-status outdir
    [ "$1" -eq 0 ] && all_ranks 0 || { fail "run failed (exit $1)"; show_log; return; }
    "$exe" verify "$2" >"$log.verify" 2>&1 || { fail "output does not verify"; cat "$log.verify"; }
    "$gen" --check "$2" --ranks $P --tensors "$T" >"$log.check" 2>&1 ||
        { fail "output content is wrong"; cat "$log.check"; }
    [ -z "$(partials "$2")" ] || fail "temporary files left after success: $(partials "$2")"
}

# A tmpfs of the given size (and options) at $work/mnt; skips without root.
mount_tmpfs() { # size [ro]
    mnt="$work/mnt"
    mkdir -p "$mnt"
    mount -t tmpfs -o "size=$1" tmpfs "$mnt" 2>/dev/null || { mnt=""; skip "cannot mount a tmpfs (needs root)"; }
}

# After a killed run: bounded exit, nothing final, temporaries never taken
# for output, and a rerun (without --force) succeeds and removes them.
after_kill() { # launcher-status
    if [ -f "$work/hung" ]; then
        fail "hang: mpiexec did not exit within $limit s after a rank was killed"
        show_log
        return
    fi
    [ "$1" -ne 0 ] || fail "mpiexec exited 0 although a rank was killed"
    [ -z "$(finals "$out")" ] || fail "final-named output after the kill: $(finals "$out")"
    echo "left by the killed run: $(partials "$out")"
    if [ -n "$(partials "$out")" ]; then
        # Temporaries are never taken for output: verify finds no checkpoint there.
        if "$exe" verify "$out" >"$log.verify" 2>&1; then
            fail "verify accepts the killed run's directory"
        fi
    fi
    FAULT="" consolidate "$in" "$out"
    expect_success $? "$out"
}

case $scenario in
kill_switch_rank0 | kill_switch_rank1)
    make_input 20000
    r=${scenario#kill_switch_rank}
    ABORT=1 FAULT="point=write,rank=$r,hit=3,action=kill" consolidate "$in" "$out" --buffer-size 64KiB
    s=$?
    grep -q "fault injection: killing rank $r" "$log" || fail "the switch did not fire"
    after_kill $s
    ;;
kill_external)
    make_input 20000
    # Each rank records its pid; the watcher kills rank 1 once a temporary exists.
    ABORT=1 RANKWRAP_EXEC=1 FAULT="point=write,rank=1,hit=2,action=pause,wait=$work/never" \
        consolidate "$in" "$out" --buffer-size 64KiB &
    job=$!
    for _ in $(seq 1 3000); do
        [ -n "$(partials "$out")" ] && [ -f "$st/pid.1" ] && break
        sleep 0.02
    done
    if [ -f "$st/pid.1" ] && [ -n "$(partials "$out")" ]; then
        kill -9 "$(cat "$st/pid.1")"
    else
        fail "no temporary output appeared"
    fi
    wait $job
    after_kill $?
    ;;
full_disk)
    make_input 20000
    mount_tmpfs 1m
    consolidate "$in" "$mnt/out"
    expect_failure $? 3 "NoSpace" "$mnt/out"
    grep -q "$mnt" "$log" || fail "the message does not name the output directory"
    ;;
readonly)
    make_input 300
    mount_tmpfs 4m
    mkdir -p "$mnt/out"
    mount -o remount,ro "$mnt" || skip "cannot remount read-only"
    consolidate "$in" "$mnt/out"
    expect_failure $? 3 "PermissionDenied" "$mnt/out"
    ;;
missing_indir)
    make_input 10
    consolidate "$work/no-such-dir" "$out"
    expect_failure $? 3 "NotFound: .*no-such-dir" "$out"
    ;;
vanished_input)
    make_input 300
    victim="$in/shard-00003-model-00001-of-00001.safetensors"
    FAULT="point=cons.listed,action=pause,mark=$work/held,wait=$work/go" consolidate "$in" "$out" &
    job=$!
    for _ in $(seq 1 3000); do [ -f "$work/held" ] && break; sleep 0.02; done
    [ -f "$work/held" ] || fail "the ranks were never held after the listing"
    rm -f "$victim"
    touch "$work/go"
    wait $job
    expect_failure $? 3 "NotFound: .*shard-00003" "$out"
    ;;
unreadable)
    command -v setpriv >/dev/null || skip "no setpriv"
    [ "$(id -u)" = 0 ] || skip "needs root to run the job as another user"
    make_input 300
    chmod -R a+rwX "$work"
    chmod 000 "$in/shard-00002-model-00001-of-00001.safetensors"
    RUNAS="setpriv --reuid=65534 --regid=65534 --clear-groups" consolidate "$in" "$out"
    expect_failure $? 3 "PermissionDenied: .*shard-00002" "$out"
    ;;
fifo_input)
    make_input 300
    mkfifo "$in/shard-00005-model-00001-of-00001.safetensors"
    consolidate "$in" "$out"
    expect_failure $? 3 "shard-00005.*(not a regular file|IoError)|IoError: .*shard-00005" "$out"
    ;;
dir_input)
    make_input 300
    mkdir "$in/shard-00005-model-00001-of-00001.safetensors"
    consolidate "$in" "$out"
    expect_failure $? 3 "shard-00005" "$out"
    ;;
reshard_fifo_input | reshard_dir_input)
    make_input 300
    if [ $scenario = reshard_fifo_input ]; then
        mkfifo "$in/shard-00005-model-00001-of-00001.safetensors"
    else
        mkdir "$in/shard-00005-model-00001-of-00001.safetensors"
    fi
    TOOL=reshard consolidate "$in" "$out"
    expect_failure $? 3 "shard-00005.*not a regular file" "$out"
    [ -z "$(find "$out" -name 'shard-*' 2>/dev/null)" ] || fail "reshard wrote rank files"
    ;;
shrunk_input | grown_input)
    make_input 3000
    victim="$in/shard-00002-model-00001-of-00001.safetensors"
    FAULT="point=cons.planned,action=pause,mark=$work/held,wait=$work/go" consolidate "$in" "$out" &
    job=$!
    for _ in $(seq 1 3000); do [ -f "$work/held" ] && break; sleep 0.02; done
    [ -f "$work/held" ] || fail "the ranks were never held after planning"
    size=$(stat -c %s "$victim")
    if [ $scenario = shrunk_input ]; then
        truncate -s $((size - 1000)) "$victim"
    else
        truncate -s $((size + 1000)) "$victim"
    fi
    touch "$work/go"
    wait $job
    expect_failure $? 3 "shard-00002.*(changed|size|short read)" "$out"
    ;;
save_full_disk)
    mkdir -p "$work" "$st"
    mount_tmpfs 1m
    OMPI_MCA_orte_abort_on_non_zero_status=0 timeout -k 10 "$limit" "$mpiexec" -n "$np" \
        "${flags[@]}" "$here/rankwrap.sh" "$st" "$exe" save "$mnt/out" --model llama:8MiB \
        >"$log" 2>&1 </dev/null
    expect_failure "$(cat "$st/rank.0" 2>/dev/null || echo $?)" 3 "NoSpace: .*not enough free space: [0-9]+ bytes needed" "$mnt/out"
    [ -z "$(find "$mnt/out" -name '*.safetensors*' 2>/dev/null)" ] || fail "save left rank files"
    ;;
one_rank_fails)
    make_input 3000
    FAULT="point=write,rank=1,code=io" consolidate "$in" "$out"
    expect_failure $? 3 "IoError: rank 1: .*injected fault at 'write' on rank 1" "$out"
    FAULT="point=read,rank=$((np - 1)),hit=2,code=nospace" consolidate "$in" "$out"
    expect_failure $? 3 "NoSpace: rank $((np - 1)):" "$out"
    ;;
force_publish_fails)
    make_input 300
    consolidate "$in" "$out" --max-file-size 4KB
    expect_success $? "$out"
    sum=$(cd "$out" && ls -A | sort | xargs cat | cksum)
    names=$(ls -A "$out" | tr '\n' ' ')
    # A different checkpoint replaces it: the old files and index move aside, then the
    # new files and the index take their names.  Fail each rename in turn until a run
    # gets through (the fault switch then has no rename left to fail).
    "$gen" --write "$work/in2" --ranks $P --tensors 200 >/dev/null || { echo "generator failed"; exit 1; }
    for ((hit = 1; hit <= 100; hit++)); do
        FAULT="point=rename,rank=0,hit=$hit" consolidate "$work/in2" "$out" --force \
            --max-file-size 3KB
        s=$?
        [ $s -eq 0 ] && break
        all_ranks "$s" || { fail "rename $hit failing: exit $s"; show_log; }
        grep -q "injected fault at 'rename'" "$log" || { fail "rename $hit: no injected failure"; show_log; }
        [ "$(ls -A "$out" | tr '\n' ' ')" = "$names" ] ||
            fail "rename $hit: the directory holds $(ls -A "$out" | tr '\n' ' '), not $names"
        [ "$(cd "$out" && ls -A | sort | xargs cat | cksum)" = "$sum" ] ||
            fail "rename $hit: the earlier output was changed"
    done
    # Old files and index aside, the new files and the new index: all failed in turn.
    [ "$hit" -gt $(($(echo "$names" | wc -w) + 3)) ] || fail "only $((hit - 1)) renames failed"
    T=200
    expect_success 0 "$out"
    ;;
exists_no_force)
    make_input 300
    consolidate "$in" "$out"
    expect_success $? "$out"
    sum=$(cat "$out"/* | cksum)
    consolidate "$in" "$out"
    s=$?
    [ $s -eq 3 ] && all_ranks 3 || { fail "second run without --force: exit $s"; show_log; }
    grep -q "AlreadyExists" "$log" || { fail "no AlreadyExists error"; show_log; }
    [ "$(cat "$out"/* | cksum)" = "$sum" ] || fail "the existing output was changed"
    consolidate "$in" "$out" --force
    expect_success $? "$out"
    ;;
same_dir)
    make_input 300
    ls "$in" >"$work/before"
    consolidate "$in" "$in"
    s=$?
    [ $s -ne 0 ] && [ $s -ne 124 ] || { fail "OUTDIR = INDIR accepted (exit $s)"; show_log; }
    ln -s "$in" "$work/link"
    consolidate "$in" "$work/link/."
    s=$?
    [ $s -ne 0 ] && [ $s -ne 124 ] || { fail "OUTDIR = INDIR through a symlink accepted"; show_log; }
    ls "$in" | cmp -s - "$work/before" || fail "the input directory was changed"
    ;;
*)
    echo "faults.sh: unknown scenario $scenario" >&2
    exit 2
    ;;
esac
[ $failures -eq 0 ] && echo "ok $scenario"
[ $failures -eq 0 ]
