# tenge test bed: the guest's watchdog, started by stage2.sh beside the test script as
#   bash -c "<this file's text>" tenge-watchdog SECONDS FIFO
# If the script still runs after SECONDS (the host's timeout is 30 s later), it prints where
# every user process and every task in uninterruptible sleep waits (state, kernel wait
# channel, kernel stack), then the kernel's own blocked-task report (sysrq w). The host
# kills QEMU at its timeout, so without this a hung guest leaves nothing that says why.
#
# Once started it uses shell builtins only: no program is loaded, so it still works when
# the 9p root that every program comes from stops answering. It sleeps with `read -t` on a
# FIFO nothing writes to. If the guest's timers stop firing, it never wakes: a timed-out
# run without its report says that much.

secs=$1
exec 3<>"$2"
read -r -t "$secs" -u 3 _

printf '\nTENGE-WATCHDOG: the script still runs after %s s; where tasks wait:\n' "$secs"
for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    comm="" state="" wchan="" stack="" cmd=""
    read -r comm <"$d/comm" 2>/dev/null
    while read -r key value _; do
        [[ $key == State: ]] && state=$value
    done <"$d/status" 2>/dev/null
    # Kernel threads have an empty command line.
    read -r -d '' cmd <"$d/cmdline" 2>/dev/null
    [[ -n $cmd || $state == D ]] || continue
    [[ $pid == "$$" ]] && continue
    read -r wchan <"$d/wchan" 2>/dev/null
    while read -r _ frame; do
        stack+="${frame%%+*}<"
    done <"$d/stack" 2>/dev/null
    printf 'TENGE-WATCHDOG: %s %s %s wchan=%s stack=%s\n' \
        "$pid" "$comm" "$state" "${wchan:-?}" "${stack%<}"
done

# The kernel's report of tasks in uninterruptible sleep, from /dev/kmsg: the lines after
# sysrq's header, at most 60.
echo w >/proc/sysrq-trigger
exec 4</dev/kmsg
shown=-1
while ((shown < 60)) && read -r -t 1 -u 4 line; do
    if ((shown < 0)); then
        [[ $line == *"Show Blocked State"* ]] && shown=0
        continue
    fi
    printf 'TENGE-WATCHDOG: kernel: %s\n' "${line#*;}"
    shown=$((shown + 1))
done
printf 'TENGE-WATCHDOG: end\n'
